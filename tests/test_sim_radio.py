"""The INA226 simulator's radio load (issue #22): while a frame is on the link the simulated
rail carries the radio's transmit power (BottleNet Table 3), so the energy the daemon
measures per frame includes what sending it costs."""

from __future__ import annotations

import json
import time

import pytest
from support.device_side import start_peer, write_config

from device.config import PowerSection, load_config
from device.daemon import Daemon
from device.power import PowerMeter
from hardware.sim import SimulatedLoad, VirtualClock
from hardware.sim.radio import RADIOS, radio_model


def _load(radio: str | None, clock: VirtualClock) -> SimulatedLoad:
    # No noise, no droop: every integral below is exact arithmetic.
    return SimulatedLoad(
        idle_w=1.0, busy_w=3.0, noise_w=0.0, source_ohms=0.0, clock=clock, radio=radio
    )


def test_table3_figures_and_names():
    g3 = radio_model("3g")
    assert g3.power_w == pytest.approx((868.98 * 1.1 + 817.88) / 1e3)
    assert g3.airtime_s(1375) == pytest.approx(0.01)  # 11000 bits at 1.1 Mbit/s
    assert radio_model("Wi-Fi") is RADIOS["WiFi"]
    with pytest.raises(ValueError, match=r"unknown radio 'lora'.*3G, 4G, WiFi"):
        radio_model("lora")


def test_transmit_adds_radio_power_for_the_air_time():
    clock = VirtualClock(100.0)
    load = _load("3G", clock)
    p = RADIOS["3G"].power_w
    air = load.transmit(1375)  # 10 ms on the air
    assert air == pytest.approx(0.01)
    clock.sleep(0.05)
    assert load.energy_j(100.0, 100.05) == pytest.approx(1.0 * 0.05 + p * 0.01)
    # Busy during a transmission: both draw; back-to-back frames queue on the radio.
    load.set_busy(True)
    load.transmit(1375)
    load.transmit(1375)
    clock.sleep(0.005)
    load.set_busy(False)  # radio still on for 15 ms more
    clock.sleep(0.045)
    assert load.energy_j(100.05, 100.1) == pytest.approx(1.0 * 0.05 + 2.0 * 0.005 + p * 0.02)
    assert load.radio_energy_j == pytest.approx(3 * p * 0.01)


def test_no_radio_configured_means_no_transmit_power():
    clock = VirtualClock(5.0)
    load = _load(None, clock)
    assert load.transmit(100_000) == 0.0
    clock.sleep(0.1)
    assert load.energy_j(5.0, 5.1) == pytest.approx(0.1)


def test_the_ina226_driver_measures_the_radio_through_the_power_meter():
    """Real time, the real driver and sampler on the simulated chip: a 100 ms 3G burst."""
    meter = PowerMeter(
        PowerSection(
            monitor="sim",
            rate_hz=1000.0,
            params={"idle_w": 1.0, "busy_w": 3.0, "noise_w": 0.0, "radio": "3G"},
        )
    )
    meter.start()
    try:
        assert meter.wait_until(time.monotonic() + 0.02, 5.0)  # the sampler is under way
        t0 = time.monotonic()
        meter.transmit(13750)  # 110 000 bits at 1.1 Mbit/s: 100 ms
        t1 = t0 + 0.1
        assert meter.wait_until(t1 + 0.05, 5.0)
        mean_w = meter.mean_power_w(t0 + 0.01, t1 - 0.01)  # inside the burst
        after_w = meter.mean_power_w(t1 + 0.01, t1 + 0.04)
    finally:
        meter.stop()
    assert mean_w == pytest.approx(1.0 + RADIOS["3G"].power_w, rel=0.05)
    assert after_w == pytest.approx(1.0, rel=0.05)


def test_daemon_drives_the_radio_with_every_frame_it_sends(head, tmp_path, free_port):
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    extra = (
        f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n'
        '[power]\nmonitor = "sim"\nrate_hz = 1000.0\n'
        '[power.params]\nidle_w = 1.0\nbusy_w = 3.0\nnoise_w = 0.0\nradio = "3G"\n'
    )
    cfg = load_config(write_config(tmp_path / "d.toml", head[0], port, extra))
    try:
        daemon = Daemon(cfg, max_frames=12)
        assert daemon.run() == 0
    finally:
        peer.kill()
    rows = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    sent = [r for r in rows if r["status"] == "ok"]
    assert len(sent) == 12 and all(r["bytes"] > 0 for r in sent)
    radio = RADIOS["3G"]
    assert daemon.power.load.radio_energy_j * 1e3 == pytest.approx(
        sum(radio.energy_mj(r["bytes"]) for r in sent)
    )


def test_set_radio_changes_the_transmit_power_from_then_on():
    clock = VirtualClock(10.0)
    load = _load("WiFi", clock)
    wifi, g3 = RADIOS["WiFi"], RADIOS["3G"]
    load.transmit(1375)
    clock.sleep(0.05)
    load.set_radio("3G")  # the link went from Wi-Fi to 3G under the daemon
    load.transmit(1375)
    clock.sleep(0.05)
    assert load.energy_j(10.0, 10.1) == pytest.approx(
        1.0 * 0.1 + wifi.power_w * wifi.airtime_s(1375) + g3.power_w * g3.airtime_s(1375)
    )
    with pytest.raises(ValueError, match="unknown radio"):
        load.set_radio("5G")


def test_sighup_with_a_new_radio_switches_the_simulated_rail_in_place(head, tmp_path, free_port):
    port = free_port()
    power = '[power]\nmonitor = "sim"\nrate_hz = 1000.0\n[power.params]\nnoise_w = 0.0\n'
    path = tmp_path / "d.toml"
    metrics = f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n'
    cfg = load_config(write_config(path, head[0], port, metrics + power + 'radio = "WiFi"\n'))
    daemon = Daemon(cfg)
    policy = daemon.policy
    assert daemon.power.load.radio is RADIOS["WiFi"]
    write_config(path, head[0], port, metrics + power + 'radio = "3G"\n')
    daemon._do_reload()  # what SIGHUP runs
    assert daemon.power.load.radio is RADIOS["3G"]
    assert daemon.policy is policy  # estimates kept: no rebuild for a radio change
    assert daemon.cfg.power.params["radio"] == "3G"
    # Anything else changed as well: not a radio-only change (the full reload path).
    write_config(path, head[0], port, metrics + power + 'radio = "4G"\nidle_w = 2.0\n')
    assert not daemon._radio_only_change(load_config(path))
