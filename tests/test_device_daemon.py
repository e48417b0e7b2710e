"""Integration: the real daemon process against a real ZeroMQ ROUTER peer process.

The head is a real int8 TFLite model built with tensorflow (in a subprocess), the camera is
the real synthetic/folder source, the peer decodes every payload with the codec announced in
HELLO — so a frame that "flows" here really crossed the wire intact.
"""

from __future__ import annotations

import json
import signal

import numpy as np
from PIL import Image
from support.device_side import metrics_rows, start_daemon, start_peer, write_config


def test_frames_flow_and_replies_match_by_seq(head, tmp_path, free_port):
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    try:
        cfg = write_config(
            tmp_path / "d.toml",
            head[0],
            port,
            f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n',
        )
        d = start_daemon(cfg, "--frames", "40", "--summary", str(tmp_path / "sum.json"))
        assert d.p.wait(60) == 0, d.err[-10:]
    finally:
        peer.kill()
    summary = json.loads((tmp_path / "sum.json").read_text())
    assert summary["frames_submitted"] == 40
    assert summary["replied"] == 40 and summary["lost"] == 0
    rows = metrics_rows(tmp_path / "m.jsonl")
    assert [r["seq"] for r in rows] == list(range(1, 41))
    seen = {e["seq"]: e for e in peer.events() if e.get("event") == "frame"}
    for r in rows:
        # The peer's top-1 (computed from the decoded payload) came back on the same seq.
        assert r["status"] == "ok"
        assert r["top1"] == seen[r["seq"]]["top1"]
        assert r["bytes"] == seen[r["seq"]]["bytes"]
        assert r["rtt_ms"] > 0 and r["latency_ms"] >= r["rtt_ms"]
        assert r["head_ms"] > 0 and r["encode_ms"] > 0
    hello = next(e for e in peer.events() if e.get("event") == "hello")
    manifest = json.loads(head[1].read_text())
    assert hello["model_id"] == manifest["model_id"]
    assert hello["shape"] == manifest["bottleneck_chw"]


def test_server_restart_reconnects_and_continues(head, tmp_path, free_port, wait_until):
    """The daemon survives a server restart: frames captured meanwhile are dropped (not
    queued), and a new session carries on. How fast it comes back is bounded exactly by
    test_device_link (HELLO retries <= hello_timeout + reconnect_max apart, < 2 s), how
    little memory an outage holds by the same file's outage test, and the daemon's RSS over
    time by benchmarks/daemon.py — not by wall-clock or RSS thresholds here."""
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    peer = start_peer(endpoint)
    metrics = tmp_path / "m.jsonl"
    cfg = write_config(tmp_path / "d.toml", head[0], port, f'[metrics]\npath = "{metrics}"\n')
    d = start_daemon(cfg, "--summary", str(tmp_path / "sum.json"))

    def rows() -> list[dict]:
        return metrics_rows(metrics)

    try:
        assert d.wait_for(lambda e: e.get("event") == "ready", 30, "err"), d.err[-10:]
        wait_until(lambda: any(r["status"] == "ok" for r in rows()), 10, what="a first reply")
        peer.kill()
        # The outage is seen (missed pongs), then a HELLO goes unanswered: the camera (100
        # fps) ran on meanwhile, and its frames were dropped (counted in the summary below).
        assert d.wait_for(
            lambda e: e.get("event") == "session_reset" and e.get("reason") == "hello_timeout",
            10,
            "err",
        ), d.err[-10:]
        peer2 = start_peer(endpoint)
        hello = peer2.wait_for(lambda e: e.get("event") == "hello", 10)
        assert hello is not None, d.err[-10:]
        # ... and it keeps going on the new session.
        wait_until(
            lambda: len([e for e in peer2.events() if e.get("event") == "frame"]) > 20,
            10,
            what="frames on the new session",
        )
        frames2 = [e for e in peer2.events() if e.get("event") == "frame"]
        assert {e["session"] for e in frames2} == {hello["session"]}
        rc = d.stop(signal.SIGTERM)
    finally:
        d.kill()
        peer.kill()
        if "peer2" in locals():
            peer2.kill()
    assert rc == 0
    s = json.loads((tmp_path / "sum.json").read_text())
    assert s["sessions"] >= 2 and s["reconnects"] >= 1
    assert s["dropped_outage"] > 0
    # Nothing in flight beyond the window ever accumulated.
    assert s["sent"] - s["replied"] - s["lost"] <= 4


def test_malformed_replies_are_counted_not_fatal(head, tmp_path, free_port):
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}", "--malformed")
    try:
        cfg = write_config(tmp_path / "d.toml", head[0], port)
        d = start_daemon(cfg, "--frames", "30", "--summary", str(tmp_path / "sum.json"))
        assert d.p.wait(60) == 0, d.err[-10:]
    finally:
        peer.kill()
    s = json.loads((tmp_path / "sum.json").read_text())
    assert s["replied"] == 30
    # Every third frame the peer sends garbage, a truncated reply and a foreign version.
    assert s["malformed"] >= 3 * 9
    assert s["unknown_replies"] >= 9  # replies for a seq never sent


def test_camera_failure_is_reported_and_retried(head, tmp_path, free_port):
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    photos = tmp_path / "photos"  # does not exist yet: the camera cannot open
    camera = (
        f'[camera]\nsource = "folder"\n[camera.reconnect]\ninitial = 0.1\nmaximum = 0.4\n'
        f'[camera.params]\npath = "{photos}"\nfps = 50.0\n'
    )
    cfg = write_config(tmp_path / "d.toml", head[0], port, camera=camera)
    d = start_daemon(cfg, "--frames", "10", "--summary", str(tmp_path / "sum.json"))
    try:
        failed = d.wait_for(lambda e: e.get("event") == "camera_failed", 30, "err")
        assert failed is not None and str(photos) in failed["error"]
        assert d.p.poll() is None  # still running, retrying
        (photos / "cat").mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                photos / "cat" / f"{i}.png"
            )
        assert d.p.wait(60) == 0, d.err[-10:]
    finally:
        d.kill()
        peer.kill()
    s = json.loads((tmp_path / "sum.json").read_text())
    assert s["camera_failures"] >= 1 and s["replied"] == 10
    # The folder's class sub-folder travels as the label, so accuracy can be scored.
    assert s["scored"] == 10


def test_bad_config_exits_2_naming_the_key(tmp_path, head):
    cfg = write_config(tmp_path / "d.toml", head[0], 1, "windw = 3\n")
    d = start_daemon(cfg)
    assert d.p.wait(30) == 2
    d.drained()
    assert len(d.err) == 1 and "server.windw" in d.err[0], d.err


def test_check_flag_and_a_head_that_does_not_match_its_manifest(head, tmp_path):
    cfg = write_config(tmp_path / "d.toml", head[0], 1)
    ok = start_daemon(cfg, "--check")
    assert ok.p.wait(60) == 0, ok.err[-5:]
    # A model file that is not the one the manifest describes must be refused at start.
    bad = tmp_path / "head.tflite"
    bad.write_bytes(head[0].read_bytes() + b"\0")
    (tmp_path / "head.json").write_text(head[1].read_text())
    d = start_daemon(write_config(tmp_path / "d2.toml", bad, 1))
    assert d.p.wait(60) == 3  # wire.exitcodes.BAD_INPUT: a model artifact that is not valid
    d.drained()
    assert len(d.err) == 1 and "does not match its manifest" in d.err[0], d.err


def test_sigterm_drains_frames_in_flight(head, tmp_path, free_port, wait_until):
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}", "--delay-ms", "100")
    cfg = write_config(tmp_path / "d.toml", head[0], port, "window = 4\n")
    d = start_daemon(cfg, "--summary", str(tmp_path / "s.json"))
    try:
        assert d.wait_for(lambda e: e.get("event") == "ready", 30, "err"), d.err[-10:]
        # The slow server (100 ms a frame) keeps the window full once frames arrive.
        wait_until(lambda: sum(e.get("event") == "frame" for e in peer.events()) >= 2, 10)
        assert d.stop(signal.SIGTERM) == 0
    finally:
        d.kill()
        peer.kill()
    stopping = next(e for e in d.events("err") if e.get("event") == "stopping")
    assert stopping["inflight"] >= 1
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["drained"] is True and s["lost"] == 0
    assert s["replied"] == s["sent"] == s["frames_submitted"]
