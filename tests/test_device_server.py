"""The daemon against the real tail server process (``splitfit-server``), not a stand-in.

The tail is a real TorchScript module written by the server tests' helper with the head's
model_id, bottleneck shape and codec, so HELLO negotiation, decoding and top-k all run the
production code on both sides.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from support.device_side import cached_head, start_daemon, start_server, write_config

pytest.importorskip("torch")
from support.server_side import make_tail, tail_for_head


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.getbasetemp()
    tfl, manifest = cached_head(base)
    return tfl, manifest, tail_for_head(manifest, base / "tail")


@pytest.mark.slow
def test_daemon_streams_to_the_real_server(split, tmp_path, free_port):
    tfl, _, tail_dir = split
    port = free_port()
    server = start_server(tmp_path, port, tail_dir)
    try:
        cfg = write_config(
            tmp_path / "d.toml", tfl, port, f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n'
        )
        d = start_daemon(cfg, "--frames", "30", "--summary", str(tmp_path / "s.json"))
        assert d.p.wait(60) == 0, d.err[-10:]
    finally:
        server.stop()
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["replied"] == 30 and s["lost"] == 0 and s["server_errors"] == 0
    rows = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert sorted(r["seq"] for r in rows) == list(range(1, 31))
    assert {r["top1_label"] for r in rows} <= {"ant", "bee", "cat"}
    assert all(r["server_compute_ms"] is not None and r["server_compute_ms"] > 0 for r in rows)


@pytest.mark.slow
def test_real_server_killed_and_restarted(split, tmp_path, free_port):
    tfl, _, tail_dir = split
    port = free_port()
    server = start_server(tmp_path, port, tail_dir)
    cfg = write_config(tmp_path / "d.toml", tfl, port)
    d = start_daemon(cfg, "--summary", str(tmp_path / "s.json"))
    try:
        assert d.wait_for(lambda e: e.get("event") == "ready", 30, "err"), d.err[-10:]
        server.kill()
        server = start_server(tmp_path, port, tail_dir)
        t_up = time.monotonic()
        n0 = sum(1 for e in d.events("err") if e.get("event") == "session_open")
        opened = None
        while time.monotonic() - t_up < 5 and opened is None:
            opens = [e for e in d.events("err") if e.get("event") == "session_open"]
            opened = opens[-1] if len(opens) > n0 or len(opens) >= 2 else None
            time.sleep(0.02)
        assert opened is not None, d.err[-10:]
        assert time.monotonic() - t_up < 2.0
        time.sleep(1.0)
        assert d.stop(signal.SIGTERM) == 0
    finally:
        d.kill()
        server.stop()
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["sessions"] >= 2 and s["replied"] > 20


@pytest.mark.slow
def test_server_without_the_model_refuses_hello_daemon_keeps_retrying(split, tmp_path, free_port):
    tfl, _, _ = split
    other, _ = make_tail(tmp_path / "other", model_id="some-other-split", chw=(2, 8, 8))
    port = free_port()
    server = start_server(tmp_path, port, other)
    cfg = write_config(tmp_path / "d.toml", tfl, port)
    d = start_daemon(cfg, "--summary", str(tmp_path / "s.json"))
    try:
        refused = d.wait_for(lambda e: e.get("event") == "server_error", 30, "err")
        assert refused is not None and refused["code"] == "UNKNOWN_MODEL", d.err[-10:]
        time.sleep(2.0)
        assert d.p.poll() is None  # still alive, still trying
        assert d.stop(signal.SIGTERM) == 0
    finally:
        d.kill()
        server.stop()
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["sessions"] == 0 and s["replied"] == 0 and s["server_errors"] >= 2
