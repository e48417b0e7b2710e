"""The server and power-log units' commands, run under the units' own policies.

Like tests/test_systemd_notify.py does for the device daemon: the ExecStart= of the shipped
unit (venv path localized), its Environment=, its seccomp settings and (as root) its
read-only file-system view with only its State/Logs/Cache/RuntimeDirectory= writable. The
server gets a real TorchScript tail and a real client; the power logger the INA226
simulator on a fake SMBus (there is no I2C bus here).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.sandbox import (
    SERVER_UNIT,
    UNIT_DIR,
    exec_start,
    sandboxed,
    time_span,
    unit_env,
    unit_settings,
    with_unit_filesystem,
)
from support.unit_marks import needs_sandbox, needs_unit_fs
from support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
POWER_LOG_UNIT = UNIT_DIR / "splitfit-power-log.service"

pytestmark = needs_sandbox


def env_file(path: Path) -> dict[str, str]:
    """An EnvironmentFile= (KEY=VALUE lines, shell-style quotes, # comments)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = " ".join(shlex.split(value))
    return out


# --- power-log ----------------------------------------------------------------------------------


def test_power_log_env_file_matches_the_unit_default() -> None:
    default = unit_env(POWER_LOG_UNIT)["POWER_LOG_ARGS"]
    assert env_file(UNIT_DIR / "power-log.env")["POWER_LOG_ARGS"] == default


@needs_unit_fs
def test_power_log_unit_records_under_its_policy(tmp_path: Path) -> None:
    """The unit's exact command line (plus --sim: no INA226 here) records into the logs dir,
    with no network (AF_UNIX only), no W+X memory, a read-only system, and stops cleanly."""
    env = {**unit_env(POWER_LOG_UNIT), **env_file(UNIT_DIR / "power-log.env")}
    argv = exec_start(POWER_LOG_UNIT, env)
    out_at = argv.index("--out") + 1
    assert argv[out_at] == "/var/log/splitfit/power.csv"
    argv[out_at] = "/media/log/power.csv"
    fs = tmp_path / "fs"
    cmd = with_unit_filesystem(fs, ("state", "log"), sandboxed(POWER_LOG_UNIT, *argv, "--sim"))
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    log = fs / "log" / "power.csv"

    def rows() -> list[str]:
        text = log.read_text() if log.exists() else ""
        return [ln for ln in text.splitlines() if ln[:1].isdigit()]

    with contextlib.suppress(AssertionError):  # too few rows is reported below, with stderr
        wait_until(lambda: len(rows()) >= 20 or proc.poll() is not None, 60, interval=0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(
        timeout=time_span(unit_settings(POWER_LOG_UNIT)["TimeoutStopSec"][-1])
    )
    assert proc.returncode == 0, err[-2000:]
    assert len(rows()) >= 20, err[-2000:]
    shunt = float(argv[argv.index("--shunt-ohms") + 1])
    assert f'"shunt_ohms":{shunt}' in log.read_text()  # the unit's args reached the driver


# --- server -------------------------------------------------------------------------------------


@pytest.mark.slow  # torch in two processes: ~15 s
@needs_unit_fs
def test_server_unit_serves_a_tail_under_its_policy(tmp_path: Path, free_port) -> None:
    from support.server_side import CHW, QUANT, expected_topk, hello_for, make_tail, random_payload

    from server.client import TailClient

    fs = tmp_path / "fs"
    fs.mkdir()
    _, module = make_tail(fs / "tail", model_id="unit-model")
    port = free_port()
    (fs / "server.toml").write_text(
        "[server]\n"
        f'bind = ["tcp://127.0.0.1:{port}", "ipc:///media/run/server.sock"]\n'
        "linger_ms = 200\n"
        "[compute]\nthreads = 1\n"
        '[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = 0\n'
        '[[models]]\npath = "/media/tail"\n'
    )
    env = {**unit_env(SERVER_UNIT), "HOME": "/media/cache", "PYTHONPATH": str(ROOT)}
    argv = exec_start(SERVER_UNIT, env)
    argv[argv.index("--config") + 1] = "/media/server.toml"
    writable = ("state", "log", "cache", "run")  # State/Logs/Cache/RuntimeDirectory=
    for key in ("StateDirectory", "LogsDirectory", "CacheDirectory", "RuntimeDirectory"):
        assert unit_settings(SERVER_UNIT)[key] == ["splitfit"], key
    cmd = with_unit_filesystem(fs, writable, sandboxed(SERVER_UNIT, *argv))
    server = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        sock = fs / "run" / "server.sock"
        with contextlib.suppress(AssertionError):  # not bound is reported below, with stderr
            wait_until(lambda: sock.exists() or server.poll() is not None, 120, interval=0.1)
        if not sock.exists():
            server.kill()
            _, err = server.communicate()
            pytest.fail(
                f"server did not bind its ipc endpoint ({server.returncode}): {err[-2000:]}"
            )
        rng = np.random.default_rng(0)
        for endpoint in (f"ipc://{sock}", f"tcp://127.0.0.1:{port}"):
            client = TailClient(endpoint, timeout_s=30.0)
            try:
                client.hello(hello_for("unit-model", chw=CHW, quant=QUANT))
                payload, x = random_payload(rng)
                reply = client.infer(payload)
            finally:
                client.close()
            ids, _ = expected_topk(module, x, len(reply.top_ids))
            assert list(reply.top_ids) == ids
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(
            timeout=time_span(unit_settings(SERVER_UNIT)["TimeoutStopSec"][-1])
        )
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err[-2000:]
    assert "Operation not permitted" not in err and "Read-only file system" not in err, err[-2000:]
