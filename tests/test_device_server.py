"""The daemon against the real tail server process (``splitfit-server``), not a stand-in.

The tail is a real TorchScript module written by the server tests' helper with the head's
model_id, bottleneck shape and codec, so HELLO negotiation, decoding and top-k all run the
production code on both sides. Tests wait for the daemon's own events (a session opened,
a refusal repeated, its summary counters), not for a guessed time.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from support.device_side import cached_head, start_daemon, start_server, write_config
from support.waiting import wait_until

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


def _opens(d) -> list[dict]:
    return [e for e in d.events("err") if e.get("event") == "session_open"]


@pytest.mark.slow
def test_real_server_killed_and_restarted(split, tmp_path, free_port):
    tfl, _, tail_dir = split
    port = free_port()
    server = start_server(tmp_path, port, tail_dir)
    # A summary line every 0.1 s: its counters tell when frames flow again.
    cfg = write_config(tmp_path / "d.toml", tfl, port, "[logging]\nsummary_interval_s = 0.1\n")
    d = start_daemon(cfg, "--summary", str(tmp_path / "s.json"))
    try:
        assert d.wait_for(lambda e: e.get("event") == "ready", 30, "err"), d.err[-10:]
        server.kill()
        server = start_server(tmp_path, port, tail_dir)
        t_up = time.monotonic()
        n0 = len(_opens(d))
        # a new session (or the one the daemon opened before n0 was counted)
        wait_until(lambda: len(_opens(d)) >= min(n0 + 1, 2), 5, what="a new session_open")
        assert time.monotonic() - t_up < 2.0
        flowing = d.wait_for(lambda e: e.get("event") == "summary" and e["replied"] > 20, 10, "err")
        assert flowing is not None, d.err[-10:]
        assert d.stop(signal.SIGTERM) == 0
    finally:
        d.kill()
        server.stop()
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["sessions"] >= 2 and s["replied"] > 20


def _errors(d) -> int:
    return sum(e.get("event") == "server_error" for e in d.events("err"))


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
        # still trying: refused again and again, and still alive
        wait_until(lambda: _errors(d) >= 3 or d.p.poll() is not None, 30, what="3 refusals")
        assert d.p.poll() is None and _errors(d) >= 3
        assert d.stop(signal.SIGTERM) == 0
    finally:
        d.kill()
        server.stop()
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["sessions"] == 0 and s["replied"] == 0 and s["server_errors"] >= 2
