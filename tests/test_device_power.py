"""Energy per frame with the INA226 simulator driven by the daemon's own activity, and the
status LED on gpiozero's MockFactory — the daemon runs in-process against a real peer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_device_support import cached_head, free_port, start_peer, write_config

from device.config import ConfigError, load_config
from device.daemon import Daemon
from device.jsonlog import JsonLog
from hardware.status import LedState


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> tuple[Path, Path]:
    return cached_head(tmp_path_factory.getbasetemp())


def test_energy_per_frame_follows_the_simulated_load(head, tmp_path, capsys):
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}", "--delay-ms", "20")
    extra = (
        f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n'
        '[power]\nmonitor = "sim"\nrate_hz = 1000.0\n'
        "[power.params]\nidle_w = 1.0\nbusy_w = 4.0\nnoise_w = 0.0\n"
        '[gpio]\nstatus_led = 17\npin_factory = "mock"\n'
    )
    cfg = load_config(write_config(tmp_path / "d.toml", head[0], port, extra))
    try:
        daemon = Daemon(cfg, max_frames=15, log=JsonLog("info"))
        assert daemon.power.load is not None
        led = daemon.status_led.led
        assert led is not None
        assert daemon.run() == 0
    finally:
        peer.kill()
    assert daemon.status_led.state is LedState.STREAMING
    rows = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 15
    for r in rows:
        assert r["status"] == "ok"
        lat_s = r["latency_ms"] / 1e3
        # The server holds each frame 20 ms while the board idles: the frame's energy is
        # mostly idle power, plus the busy head/encode/send time — and never above busy.
        assert 1.0 * lat_s * 1e3 * 0.9 <= r["energy_frame_mj"] <= 4.0 * lat_s * 1e3 * 1.1
        assert r["energy_frame_mj"] < 2.0 * lat_s * 1e3
        assert r["energy_head_mj"] is not None and r["energy_head_mj"] >= 0
    s = daemon.run_summary(daemon.t_start + 1.0)
    assert s["energy_frame_mj_mean"] > 0


def test_bad_power_params_name_the_key(head, tmp_path):
    cfg = load_config(
        write_config(
            tmp_path / "d.toml",
            head[0],
            1,
            '[power]\nmonitor = "sim"\n[power.params]\nidle_watts = 1.0\n',
        )
    )
    with pytest.raises(ConfigError, match=r"power\.params.*idle_watts"):
        Daemon(cfg)
