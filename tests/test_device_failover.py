"""Several front ends in ``server.endpoints``: the device fails over in order (issue #23).

Real pieces only: two ``splitfit-server`` processes with the same TorchScript tail, the
``splitfit-device`` daemon with a real int8 TFLite head, and SIGKILL (no goodbye: the device
finds out from missing pongs). What is checked is what an operator relies on: the device
moves to the next endpoint within 2 s, and every frame it took ends in a REPLY, an ERROR, or
is counted lost because it was in flight at the kill (at most ``window`` of them).
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import pytest
from support.device_side import (
    Proc,
    cached_head,
    metrics_rows,
    start_daemon,
    start_server,
    write_config,
)
from support.waiting import wait_until

pytest.importorskip("torch")
from support.server_side import tail_for_head

WINDOW = 4
FAILOVER_S = 2.0


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.getbasetemp()
    tfl, manifest = cached_head(base)
    return tfl, tail_for_head(manifest, base / "tail-failover")


def _device_config(path: Path, tfl: Path, ports: list[int], metrics: Path) -> Path:
    """Both endpoints in order; frames taken while no session is open are kept, not dropped."""
    cfg = write_config(
        path, tfl, ports[0],
        f"window = {WINDOW}\noutage = \"buffer\"\noutage_buffer = 256\n"
        f"[camera.params]\nwidth = 64\nheight = 48\nfps = 50.0\n"
        f'[metrics]\npath = "{metrics}"\n',
        camera='[camera]\nsource = "synthetic"\n',
    )  # fmt: skip
    endpoints = ", ".join(f'"tcp://127.0.0.1:{p}"' for p in ports)
    text = cfg.read_text().replace(f'endpoints = ["tcp://127.0.0.1:{ports[0]}"]', "")
    cfg.write_text(text.replace("[server]\n", f"[server]\nendpoints = [{endpoints}]\n", 1))
    return cfg


def _answered(path: Path, captured_after: float = -math.inf) -> int:
    """Frames captured after ``captured_after`` and answered by a server."""
    return sum(
        r["status"] == "ok" and r["capture_mono"] > captured_after for r in metrics_rows(path)
    )


def _opens(d: Proc) -> list[dict]:
    return [e for e in d.events("err") if e.get("event") == "session_open"]


@pytest.mark.slow
def test_first_front_end_killed_mid_stream_device_moves_to_the_second(split, tmp_path, free_port):
    tfl, tail_dir = split
    ports = [free_port(), free_port()]
    first = start_server(tmp_path / "a", ports[0], tail_dir)
    second = start_server(tmp_path / "b", ports[1], tail_dir)
    metrics = tmp_path / "m.jsonl"
    cfg = _device_config(tmp_path / "d.toml", tfl, ports, metrics)
    d = start_daemon(cfg, "--summary", str(tmp_path / "s.json"))
    endpoint = [f"tcp://127.0.0.1:{p}" for p in ports]
    try:
        assert d.wait_for(lambda e: e.get("event") == "session_open", 30, "err"), d.err[-10:]
        assert _opens(d)[0]["endpoint"] == endpoint[0]  # in order: the first one first
        wait_until(lambda: _answered(metrics) >= 20, 10, what="20 answers from the first")
        first.kill()  # SIGKILL mid-stream
        t_kill = time.monotonic()
        moved = wait_until(
            lambda: next((e for e in _opens(d) if e["endpoint"] == endpoint[1]), None),
            10,
            what="a session on the second front end",
        )
        t_moved = time.monotonic()
        assert t_moved - t_kill < FAILOVER_S, f"failover took {t_moved - t_kill:.2f} s"
        assert moved["endpoint"] == endpoint[1]
        # Frames captured after the failover are answered by the second front end.
        wait_until(lambda: _answered(metrics, t_moved) >= 20, 10, what="20 answers after it")
        assert d.stop(signal.SIGTERM) == 0  # drains what is in flight
    finally:
        d.kill()
        first.kill()
        second.stop()
    s = json.loads((tmp_path / "s.json").read_text())
    rows = metrics_rows(metrics)
    # Every frame the daemon took has exactly one outcome row.
    assert sorted(r["seq"] for r in rows) == list(range(1, s["frames_submitted"] + 1))
    by_status: dict[str, list[dict]] = {}
    for r in rows:
        by_status.setdefault(r["status"], []).append(r)
    assert set(by_status) <= {"ok", "error", "lost"}, {k: len(v) for k, v in by_status.items()}
    # Only frames already on the wire to the killed front end go unanswered.
    lost = by_status.get("lost", [])
    assert len(lost) <= WINDOW, lost
    assert s["dropped_outage"] == 0 and s["dropped_buffer"] == 0
    after = [r for r in rows if r["capture_mono"] > t_moved]
    assert len(after) >= 20 and all(r["status"] == "ok" for r in after)
    assert {r["top1_label"] for r in by_status["ok"]} <= {"ant", "bee", "cat"}
    assert s["sessions"] == 2


@pytest.mark.slow
def test_first_endpoint_down_at_start_device_opens_on_the_second(split, tmp_path, free_port):
    tfl, tail_dir = split
    ports = [free_port(), free_port()]  # nothing listens on the first
    second = start_server(tmp_path / "b", ports[1], tail_dir)
    metrics = tmp_path / "m.jsonl"
    cfg = _device_config(tmp_path / "d.toml", tfl, ports, metrics)
    started = time.monotonic()
    d = start_daemon(cfg, "--frames", "30", "--summary", str(tmp_path / "s.json"))
    try:
        assert d.p.wait(60) == 0, d.err[-10:]
    finally:
        d.kill()
        second.stop()
    opens = _opens(d)
    assert [e["endpoint"] for e in opens] == [f"tcp://127.0.0.1:{ports[1]}"]
    resets = [e for e in d.events("err") if e.get("event") == "session_reset"]
    assert resets and resets[0]["reason"] == "hello_timeout"  # the first was tried first
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["replied"] == 30 and s["lost"] == 0
    assert time.monotonic() - started < 60
