"""Config validation and the ``splitfit-server`` command line (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from support.server_side import hello_for, make_tail, random_payload
from support.waiting import wait_until

from server.client import TailClient
from server.config import ConfigError, config_from_dict, load_config
from wire.protocol import Reply

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"models": [{"path": "tails/a"}]}


def test_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "examples" / "server.toml")
    assert cfg.server.bind[0] == "tcp://127.0.0.1:5555"
    assert cfg.batching.max_batch == 32 and cfg.batching.max_wait_us == 2000
    assert cfg.models[0].tail == ROOT / "examples" / "../demo-out/tail" / "tail.pt"
    assert cfg.metrics.port == 9464 and not cfg.auth.enabled


def test_defaults_paths_and_per_model_overrides(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {
            "batching": {"max_batch": 8},
            "models": [
                {"path": "tails/a"},
                {"tail": "/abs/b.pt", "max_batch": 1, "strict_bits": False},
            ],
        },
        tmp_path,
    )
    a, b = cfg.models
    assert a.tail == tmp_path / "tails/a/tail.pt" and a.manifest == tmp_path / "tails/a/tail.json"
    assert a.batching.max_batch == 8 and a.strict_bits
    assert b.tail == Path("/abs/b.pt") and b.manifest == Path("/abs/tail.json")
    assert b.batching.max_batch == 1 and b.batching.max_wait_us == 2000 and not b.strict_bits


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"servr": {}, **MODEL}, "'servr'"),
        ({"server": {"max_wait_us": 5}, **MODEL}, "'server.max_wait_us'"),
        ({"batching": {"max_wait_ms": 5}, **MODEL}, "'batching.max_wait_ms'"),
        ({"models": [{"path": "a", "batch": 4}]}, "'models[0].batch'"),
        ({"metrics": {"prt": 1}, **MODEL}, "'metrics.prt'"),
        ({"auth": {"enable": True}, **MODEL}, "'auth.enable'"),
        ({"log": {"lvl": "info"}, **MODEL}, "'log.lvl'"),
        ({}, "no tails configured"),
        ({"models": [{"max_batch": 2}]}, "missing key 'models[0].path' (a directory"),
        ({"models": [{"path": "a", "tail": "b.pt"}]}, "not both"),
        ({"server": {"bind": "udp://x:1"}, **MODEL}, "server.bind entry 'udp://x:1'"),
        ({"server": {"bind": []}, **MODEL}, "server.bind"),
        ({"server": {"max_payload": 0}, **MODEL}, "server.max_payload must be in"),
        ({"server": {"linger_ms": "500"}, **MODEL}, "server.linger_ms must be an integer"),
        ({"batching": {"max_batch": 0}, **MODEL}, "batching.max_batch"),
        ({"models": [{"path": "a", "max_queue": 0}]}, "models[0].max_queue"),
        ({"compute": {"device": "tpu"}, **MODEL}, "compute.device must be one of"),
        ({"compute": {"threads": True}, **MODEL}, "compute.threads must be an integer"),
        ({"compute": {"warmup": 1}, **MODEL}, "compute.warmup must be true or false"),
        ({"metrics": {"port": 70000}, **MODEL}, "metrics.port"),
        ({"metrics": {"enabled": "yes"}, **MODEL}, "metrics.enabled must be true or false"),
        ({"auth": {"enabled": True}, **MODEL}, "auth.server_secret_key is required"),
        ({"log": {"level": "loud"}, **MODEL}, "log.level"),
        ({"server": 3, **MODEL}, "'server' must be a table"),
    ],
)
def test_bad_config_names_the_key(data, message) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, "/base")
    assert message in str(info.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nbind = 1\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")


# ----------------------------------------------------------------------------- CLI


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "server.toml"
    cfg.write_text('[server]\nbindd = "tcp://127.0.0.1:1"\n[[models]]\npath = "x"\n')
    proc = _cli("--config", str(cfg))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.bindd" in lines[0] and "Traceback" not in proc.stderr


def test_cli_refuses_a_tail_whose_manifest_disagrees(tmp_path: Path) -> None:
    make_tail(tmp_path / "m", "m", manifest_overrides={"num_classes": 7, "labels": []})
    cfg = tmp_path / "server.toml"
    cfg.write_text('[[models]]\npath = "m"\n[metrics]\nenabled = false\n')
    proc = _cli("--config", str(cfg), "--check")
    assert proc.returncode == 3  # wire.exitcodes.BAD_INPUT: the tail artifact is invalid
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "num_classes = 7" in lines[0] and "Traceback" not in proc.stderr


def test_cli_without_config_exits_nonzero() -> None:
    proc = _cli()
    assert proc.returncode == 2 and "--config is required" in proc.stderr


def _start_server(cfg: Path) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--config", str(cfg)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        event = json.loads(line)
        if event["event"] == "listening":
            return proc, event
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stderr.read()}")


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_cli_signal_finishes_in_flight_batch_and_exits_0(tmp_path: Path, signum) -> None:
    make_tail(tmp_path / "m", "m")
    ipc = tmp_path / "s.sock"
    cfg = tmp_path / "server.toml"
    # A long batching delay keeps the frames queued when the signal arrives.
    cfg.write_text(
        f'[server]\nbind = ["ipc://{ipc}"]\nlinger_ms = 2000\n'
        "[batching]\nmax_batch = 64\nmax_wait_us = 3000000\n"
        '[[models]]\npath = "m"\n[metrics]\nport = 0\n'
    )
    proc, listening = _start_server(cfg)
    try:
        assert listening["endpoints"] == [f"ipc://{ipc}"] and listening["metrics_port"] > 0
        rng = np.random.default_rng(0)
        with TailClient(f"ipc://{ipc}", timeout_s=20) as c:
            c.hello(hello_for("m"))
            seqs = []
            for _ in range(5):
                frame = c.frame(random_payload(rng)[0])
                seqs.append(frame.seq)
                c.send(frame)
            # Wait until the server has read all five (they sit in the batcher, which waits
            # up to 3 s for more), so the signal lands with a batch in flight.
            url = f"http://127.0.0.1:{listening['metrics_port']}/metrics"
            wait_until(
                lambda: (
                    'splitfit_requests_total{type="frame"} 5.0'
                    in urllib.request.urlopen(url, timeout=5).read().decode()
                ),
                20,
                interval=0.05,
                what="the five frames read",
            )
            proc.send_signal(signum)
            replies = [c.receive() for _ in seqs]
        assert all(isinstance(r, Reply) for r in replies)
        assert sorted(r.seq for r in replies) == seqs
        assert proc.wait(30) == 0
        events = [json.loads(line)["event"] for line in proc.stderr.read().splitlines() if line]
        assert "signal" in events and events[-1] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_cli_keys_subcommand(tmp_path: Path) -> None:
    proc = _cli("keys", "--out", str(tmp_path / "k"), "dev1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "k" / "dev1.key").is_file() and (
        tmp_path / "k" / "dev1.key_secret"
    ).is_file()
    again = _cli("keys", "--out", str(tmp_path / "k"), "dev1")
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert os.stat(tmp_path / "k" / "dev1.key_secret").st_mode & 0o077 == 0
