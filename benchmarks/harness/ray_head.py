"""A real Ray head on 127.0.0.1 for the scale-out benchmark and the Ray backend's tests.

Why a module of its own: ``benchmarks.scaleout`` and ``tests/test_server_ray.py`` both need
``ray start --head`` in its own session, stopped as a whole (GCS, raylet, agents) the way a
head machine crashes, and restartable on the same port; both wrote that class. This module
never imports Ray: drivers run in short-lived subprocesses, so the caller's process stays
free of Ray's threads and of its import-time reading of ``RAY_ENV``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.ports import free_port

# Ray on one machine, loopback only, no token to distribute, no telemetry. Ray reads these when
# it is *imported*: set late, Ray 2.60 picks the machine's own address instead of 127.0.0.1 and
# ``ray.init`` waits for a GCS it cannot reach (tests/conftest.py applies them at start-up).
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
START_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parents[2]


class RayHead:
    """``ray start --head --block`` in its own session; ``stop`` ends the whole session.

    ``start`` after ``stop`` brings the head back on the same port (the Ray backend's tests
    restart it under a running server). ``stop_grace_s`` is how long ``ray start --block`` may
    drain after SIGTERM before the session is killed.
    """

    def __init__(
        self, tmp: Path, port: int | None = None, cpus: int = 2, stop_grace_s: float = 5.0
    ) -> None:
        self.tmp = tmp
        self.port = port if port is not None else free_port()
        self.cpus = cpus
        self.stop_grace_s = stop_grace_s
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RayHead:
        self.tmp.mkdir(parents=True, exist_ok=True)
        ray = Path(sys.executable).parent / "ray"
        log = self.tmp / "head.log"
        self.proc = subprocess.Popen(
            [
                str(ray),
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--num-cpus",
                str(self.cpus),
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
                "--temp-dir",
                str(self.tmp),
                "--block",
            ],
            env={**os.environ, **RAY_ENV},
            stdout=open(log, "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray head exited: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        raise RuntimeError(f"ray head did not start within {START_TIMEOUT_S:.0f} s; see {log}")

    def driver(self, code: str) -> str:
        """Run ``code`` in a short-lived Ray driver; return the last line it printed."""
        script = (
            "import json, logging, ray\nfrom ray import serve\n"
            f"ray.init(address={self.address!r}, log_to_driver=False, "
            "logging_level=logging.ERROR)\n" + code
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, **RAY_ENV},
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ray driver failed: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    def running_replicas(self, app: str) -> int:
        out = self.driver(
            f"st = serve.status().applications[{app!r}]\n"
            "print(sum(d.replica_states.get('RUNNING', 0) for d in st.deployments.values()))\n"
        )
        return int(out)

    def delete(self, app: str) -> None:
        self.driver(f"serve.delete({app!r})\nprint('deleted')\n")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(self.stop_grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
