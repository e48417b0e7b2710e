"""The ``ray`` tail backend: config, start-up failures, and a real Ray cluster under faults.

The slow tests start one real Ray head (``ray start --head`` on 127.0.0.1, a subprocess in
its own session) for the whole module, because Ray's start-up is heavy on two cores. The
last test kills and restarts that head, so it runs last.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from support.server_side import (
    expected_topk,
    hello_for,
    make_tail,
    random_payload,
    server_config,
)
from support.waiting import wait_until

from benchmarks.harness.ray_head import RAY_ENV, RayHead  # RAY_ENV: set by conftest.py
from benchmarks.ports import free_port
from server.backend import TailBackend
from server.batcher import DynamicBatcher
from server.config import ConfigError, config_from_dict
from wire.protocol import ErrorCode, ErrorMsg, Frame, Reply, Welcome, decode_message, encode_message

ROOT = Path(__file__).resolve().parents[1]


def _minimal(**tail: object) -> dict:
    return {"models": [{"path": "m"}], "tail": tail}


# ----------------------------------------------------------------------------- config


def test_tail_defaults_to_local() -> None:
    cfg = config_from_dict({"models": [{"path": "m"}]})
    assert cfg.tail.backend == "local"
    assert cfg.tail.autoscaling is None


def test_tail_ray_keys_are_read() -> None:
    cfg = config_from_dict(
        _minimal(
            backend="ray",
            ray_address="127.0.0.1:6379",
            autoscaling={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16},
            replica_cpus=0.5,
            request_timeout_s=2.5,
        )
    )
    assert cfg.tail.backend == "ray"
    assert cfg.tail.ray_address == "127.0.0.1:6379"
    assert cfg.tail.autoscaling is not None and cfg.tail.autoscaling.max_replicas == 4
    assert cfg.tail.replica_cpus == 0.5 and cfg.tail.request_timeout_s == 2.5


@pytest.mark.parametrize(
    ("tail", "needle"),
    [
        ({"backend": "triton"}, "tail.backend"),
        ({"backend": "ray", "num_replicas": 2, "autoscaling": {}}, "tail.num_replicas"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "tail.autoscaling.max_replicas"),
        ({"replicas": 2}, "replicas"),
        ({"request_timeout_s": 0}, "tail.request_timeout_s"),
    ],
)
def test_tail_config_errors_name_the_key(tail: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        config_from_dict(_minimal(**tail))


def test_both_backends_implement_the_interface(tmp_path: Path) -> None:
    batcher = DynamicBatcher("x", lambda items: None, max_batch=2, max_wait_us=0, max_queue=4)
    assert isinstance(batcher, TailBackend)
    pytest.importorskip("ray")
    from server.raybackend import RayTail

    missing = [
        name
        for name in ("reserve", "release", "submit", "utilization")
        if not hasattr(RayTail, name)
    ]
    assert not missing


# ----------------------------------------------------------------------------- CLI failures


def _write_server_toml(tmp_path: Path, address: str, **tail: object) -> Path:
    model_dir, _ = make_tail(tmp_path / "tail")
    lines = [
        "[server]",
        'bind = ["tcp://127.0.0.1:*"]',
        "[metrics]",
        "enabled = false",
        "[tail]",
        'backend = "ray"',
        f'ray_address = "{address}"',
        *(f"{k} = {v!r}" for k, v in tail.items()),
        "[[models]]",
        f'path = "{model_dir}"',
    ]
    path = tmp_path / "server.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run_cli(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, **RAY_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _error_lines(stderr: str) -> list[dict]:
    """The JSON log lines at error level or above; a traceback anywhere fails the test."""
    assert "Traceback" not in stderr, stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [r for r in records if r["level"] in ("error", "critical")]


def test_missing_ray_extra_is_one_line(tmp_path: Path) -> None:
    # A real failing import: a `ray` package first on the path that raises like an absent one.
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    config = _write_server_toml(tmp_path, "127.0.0.1:1")
    done = _run_cli(config, {"PYTHONPATH": f"{fake.parent}{os.pathsep}{ROOT}"})
    assert done.returncode != 0
    (error,) = _error_lines(done.stderr)
    assert "splitfit[ray]" in error["message"] and "tail.backend" in error["message"]


def test_ray_unreachable_at_start_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    port = free_port()  # nothing listens here
    config = _write_server_toml(tmp_path, f"127.0.0.1:{port}")
    started = time.monotonic()
    done = _run_cli(config)
    assert done.returncode != 0
    (error,) = _error_lines(done.stderr)
    assert f"127.0.0.1:{port}" in error["message"] and "unreachable" in error["message"]
    assert time.monotonic() - started < 60


# ----------------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("ray")
    # SIGTERM makes `ray start --block` drain for up to 30 s; a short grace, then the whole
    # session goes, as in a crash of the head machine.
    head = RayHead(tmp_path_factory.mktemp("ray"), stop_grace_s=3.0).start()
    try:
        yield head
    finally:
        head.stop()
        import ray

        if ray.is_initialized():
            ray.shutdown()


class Device:
    """A DEALER with one session that counts every answer by sequence number."""

    def __init__(self, endpoint: str, ctx: zmq.Context) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.sock.send_multipart(encode_message(hello_for()))
        assert self.sock.poll(20_000), "no WELCOME"
        welcome = decode_message(self.sock.recv_multipart())
        assert isinstance(welcome, Welcome), welcome
        self.session = welcome.session_id
        self.answers: dict[int, Reply | ErrorMsg] = {}

    def send(self, seq: int, payload: bytes) -> None:
        frame = Frame(session_id=self.session, seq=seq, capture_ts_us=0, payload=payload)
        self.sock.send_multipart(encode_message(frame))

    def collect(self, want: set[int], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not want <= set(self.answers) and time.monotonic() < deadline:
            if self.sock.poll(50):
                msg = decode_message(self.sock.recv_multipart())
                if isinstance(msg, Reply | ErrorMsg):
                    self.answers[msg.seq] = msg


def _ray_config(tmp_path: Path, head: RayHead, **tail: object):
    model_dir, module = make_tail(tmp_path / "tail")
    cfg = server_config(
        [model_dir],
        tmp_path,
        tail={
            "backend": "ray",
            "ray_address": head.address,
            "replica_cpus": 0.5,
            "request_timeout_s": 3.0,
            "reconnect_s": 0.5,
            **tail,
        },
        batching={"max_batch": 8, "max_wait_us": 2000},
    )
    return cfg, module


@pytest.mark.slow
def test_ray_backend_answers_like_the_tail_and_survives_a_replica_kill(
    ray_head: RayHead, tmp_path: Path
) -> None:
    from server.app import TailServer

    cfg, module = _ray_config(tmp_path, ray_head, num_replicas=2)
    rng = np.random.default_rng(7)
    frames = [random_payload(rng) for _ in range(8)]
    with TailServer(cfg) as srv, zmq.Context() as ctx:
        backend = srv.batchers["tiny-model"]
        devices = [Device(srv.endpoints[0], ctx) for _ in range(4)]
        # Correct answers through Ray, batched by @serve.batch.
        for d in devices:
            for seq, (payload, _) in enumerate(frames, start=1):
                d.send(seq, payload)
        for d in devices:
            d.collect(set(range(1, 9)), 30)
            for seq, (_, x) in enumerate(frames, start=1):
                reply = d.answers[seq]
                assert isinstance(reply, Reply), reply
                ids, scores = expected_topk(module, x, len(reply.top_ids))
                assert list(reply.top_ids) == ids
                np.testing.assert_allclose(reply.top_scores, scores, rtol=1e-4, atol=1e-6)

        # Both replicas answer: ask in concurrent rounds (one call at a time can keep landing
        # on one idle replica) until two process ids are seen or a minute has passed (a
        # replica may still be starting on a busy machine).
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            calls = [backend.handle.pid.remote() for _ in range(20)]
            pids |= {c.result(timeout_s=10) for c in calls}
        assert len(pids) == 2, f"expected two replicas, saw pids {pids}"

        # Stream while one replica is killed: every frame gets a REPLY or a typed ERROR.
        n = 60
        stop_at = 15
        sent: dict[int, set[int]] = {i: set() for i in range(len(devices))}

        def stream(i: int) -> None:
            for seq in range(100, 100 + n):
                devices[i].send(seq, frames[seq % len(frames)][0])
                sent[i].add(seq)
                time.sleep(0.01)

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(devices))]
        for t in threads:
            t.start()
        time.sleep(stop_at * 0.01)
        killed = min(pids)
        os.kill(killed, signal.SIGKILL)
        for t in threads:
            t.join()
        started = time.monotonic()
        for i, d in enumerate(devices):
            d.collect(sent[i], cfg.tail.request_timeout_s * 2 + 5)
        waited = time.monotonic() - started
        lost = sum(len(sent[i] - set(d.answers)) for i, d in enumerate(devices))
        answers = [d.answers[s] for i, d in enumerate(devices) for s in sent[i] if s in d.answers]
        errors = [a for a in answers if isinstance(a, ErrorMsg)]
        assert lost == 0, f"{lost} frames got neither REPLY nor ERROR ({waited:.1f} s waited)"
        assert all(e.code == ErrorCode.OVERLOADED for e in errors), errors[:3]
        assert sum(isinstance(a, Reply) for a in answers) >= len(answers) // 2
        for d in devices:
            d.sock.close()


@pytest.mark.slow
def test_ray_lost_while_running_answers_overloaded_then_recovers(
    ray_head: RayHead, tmp_path: Path
) -> None:
    """Runs last in the module: it stops the shared head and starts a new one on its port."""
    from server.app import TailServer

    cfg, _ = _ray_config(tmp_path, ray_head, num_replicas=1)
    payload, _ = random_payload(np.random.default_rng(3))
    with TailServer(cfg) as srv, zmq.Context() as ctx:
        device = Device(srv.endpoints[0], ctx)
        device.send(1, payload)
        device.collect({1}, 30)
        assert isinstance(device.answers[1], Reply)

        ray_head.stop()
        wait_until(
            lambda: not srv._ray.available,  # its supervisor has declared the loss
            cfg.tail.reconnect_s * 3 + 30,
            what="the Ray cluster declared lost",
        )
        started = time.monotonic()
        for seq in range(2, 7):
            device.send(seq, payload)
        device.collect(set(range(2, 7)), cfg.tail.request_timeout_s + 5)
        lost_answers = [device.answers.get(seq) for seq in range(2, 7)]
        assert all(isinstance(a, ErrorMsg) for a in lost_answers), lost_answers
        assert {a.code for a in lost_answers} == {ErrorCode.OVERLOADED}
        assert "unavailable" in lost_answers[0].message
        assert time.monotonic() - started < cfg.tail.request_timeout_s + 1

        ray_head.start()
        seqs = itertools.count(101)

        def answered() -> bool:
            seq = next(seqs)
            device.send(seq, payload)
            device.collect({seq}, 5)
            return isinstance(device.answers.get(seq), Reply)

        wait_until(answered, 120, interval=0.5, what="a REPLY after the head returned")
        device.sock.close()
