"""Energy per frame with the INA226 simulator driven by the daemon's own activity, and the
status LED on gpiozero's MockFactory — the daemon runs in-process against a real peer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.device_side import start_peer, write_config

from device.config import ConfigError, load_config
from device.daemon import Daemon
from hardware.status import LedState


def test_energy_per_frame_follows_the_simulated_load(head, tmp_path, capsys, free_port):
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
        daemon = Daemon(cfg, max_frames=15)
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


def test_power_log_holds_the_trace_behind_the_frames_energy(head, tmp_path, free_port):
    """With ``power.log_path`` the daemon's own samples land in a power-log CSV whose
    integral over each frame's window matches the energy the metrics report."""
    from hardware.powerlog import read_power_log

    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}", "--delay-ms", "20")
    log_path = tmp_path / "logs" / "power.csv"
    extra = (
        f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n'
        f'[power]\nmonitor = "sim"\nrate_hz = 1000.0\nlog_path = "{log_path}"\n'
        "[power.params]\nidle_w = 1.0\nbusy_w = 4.0\nnoise_w = 0.0\n"
    )
    cfg = load_config(write_config(tmp_path / "d.toml", head[0], port, extra))
    assert cfg.power.log_path == log_path
    try:
        assert Daemon(cfg, max_frames=10).run() == 0
    finally:
        peer.kill()
    log = read_power_log(log_path)
    assert len(log) > 100
    assert log.power_w.min() >= 0.9 and log.power_w.max() <= 4.2
    rows = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    for r in rows:
        t0, t1 = r["capture_mono"], r["reply_mono"]
        inside = (log.t >= t0) & (log.t <= t1)
        assert inside.sum() > 5
        t, p = log.t[inside], log.power_w[inside]
        from_log_mj = float(np.sum((p[1:] + p[:-1]) / 2 * np.diff(t))) * 1e3
        # the log's samples strictly inside the window miss at most a sample period per edge
        assert from_log_mj == pytest.approx(r["energy_frame_mj"], rel=0.1, abs=8.0)
