"""Every stderr line of the real services is one JSON object, warnings and crashes included.

Issue #18.3: numpy's ``RuntimeWarning: overflow encountered in cast`` (a HELLO with
``scale = 1e300``) reached the server's journal as plain text. Here the installed CLI runs in
a subprocess, gets that hostile HELLO, and is made to emit a Python warning and an uncaught
thread exception at run time (by a ``sitecustomize`` on its ``PYTHONPATH`` that waits for a
trigger file, so they happen after ``main`` set logging up, as a library's would).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from support.device_side import write_config
from support.server_side import hello_for, make_tail, random_payload
from support.waiting import wait_until

from server.client import TailClient
from wire.protocol import ErrorMsg, Reply

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SITECUSTOMIZE = """
import os, threading, time, warnings

_trigger = os.environ.get("SPLITFIT_TEST_TRIGGER")
if _trigger:
    def _provoke():
        while not os.path.exists(_trigger):
            time.sleep(0.02)
        warnings.warn("provoked by the test", RuntimeWarning)
        raise RuntimeError("provoked thread crash")

    threading.Thread(target=_provoke, name="provoke", daemon=True).start()
"""


def _env(tmp: Path) -> dict[str, str]:
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
        "SPLITFIT_TEST_TRIGGER": str(tmp / "trigger"),
    }


def _parse_all(lines: list[str]) -> list[dict]:
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(
                f"stderr line is not JSON: {line!r}\n" + "\n".join(lines)
            ) from None
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_server_stderr_is_json_lines_under_a_hostile_hello(tmp_path: Path) -> None:
    make_tail(tmp_path / "m", "m")
    ipc = tmp_path / "s.sock"
    cfg = tmp_path / "server.toml"
    cfg.write_text(
        f'[server]\nbind = ["ipc://{ipc}"]\nlinger_ms = 200\n'
        '[[models]]\npath = "m"\n[metrics]\nenabled = false\n[log]\nlevel = "info"\n'
    )
    proc = subprocess.Popen(
        [str(BIN / "splitfit-server"), "--config", str(cfg)],
        cwd=tmp_path,
        env=_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    pump = threading.Thread(target=lambda: lines.extend(ln.rstrip("\n") for ln in proc.stderr))
    pump.start()
    try:

        def listening() -> bool:
            assert proc.poll() is None, lines
            return any('"listening"' in ln for ln in list(lines))

        wait_until(listening, 120, interval=0.05, what="the server's listening line")
        hostile = dataclasses.replace(hello_for("m"), scale=1e300)
        with TailClient(f"ipc://{ipc}", timeout_s=20) as c:
            c.send(hostile)
            assert isinstance(c.receive(), ErrorMsg)  # refused, not a NaN-poisoned session
            c.hello(hello_for("m"))  # an honest session still works
            assert isinstance(c.infer(random_payload(np.random.default_rng(0))[0]), Reply)
        (tmp_path / "trigger").touch()
        wait_until(lambda: any("uncaught_exception" in ln for ln in list(lines)), 20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        pump.join(10)
    records = _parse_all(lines)
    events = {r["event"] for r in records}
    assert {"listening", "python_warning", "uncaught_exception", "stopped"} <= events, events
    assert all({"ts", "level", "logger", "event", "message"} <= set(r) for r in records)


def test_device_stderr_is_json_lines_on_fatal_errors(tmp_path: Path) -> None:
    """The daemon's fatal start-up errors are JSON records too (journald keeps one per line)."""
    bad_key = write_config(tmp_path / "d.toml", tmp_path / "head.tflite", 1, "windw = 3\n")
    missing_head = write_config(tmp_path / "d2.toml", tmp_path / "nowhere.tflite", 1)
    for cfg, code, event in ((bad_key, 2, "config_error"), (missing_head, 3, "start_failed")):
        run_dir = tmp_path / cfg.stem
        run_dir.mkdir()
        proc = subprocess.run(
            [str(BIN / "splitfit-device"), "--config", str(cfg)],
            cwd=run_dir,
            env=_env(run_dir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == code, proc.stderr
        (record,) = _parse_all(proc.stderr.splitlines())
        assert record["event"] == event and record["level"] == "error", record
