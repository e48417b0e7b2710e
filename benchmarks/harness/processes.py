"""Daemons as subprocesses: started with a log, waited on, stopped cleanly, never left behind.

Why one module: the demo, the e2e benchmarks and the daemon benchmark start the very same
``splitfit-server`` / ``splitfit-device`` commands and each had a hand-written start, wait and
stop loop; a fix to one (a SIGKILL after a stuck SIGTERM, a server that dies while the device
streams) now reaches all of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from benchmarks.harness.errors import BenchError

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.2


def daemon_env(**extra: str) -> dict[str, str]:
    """This environment for a daemon: unbuffered output (the log is read while it runs) and no
    ``NOTIFY_SOCKET`` (a daemon started by a benchmark must not notify the benchmark's own
    systemd unit, if it runs under one)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    env.pop("NOTIFY_SOCKET", None)
    return env


def daemon_cmd(module: str, config: Path, *args: str, prefix: Sequence[str] = ()) -> list[str]:
    """``[prefix...] python -m module --config config args...`` (prefix: ``ip netns exec``)."""
    return [*prefix, sys.executable, "-m", module, "--config", str(config), *args]


@contextmanager
def process_group(grace_s: float = 15.0) -> Iterator[list[subprocess.Popen]]:
    """Every process started inside is stopped on the way out, also on an exception or
    Ctrl-C: SIGTERM to all (last started first), then SIGKILL to any still there after
    ``grace_s``."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in reversed(procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start(
    procs: list[subprocess.Popen],
    cmd: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """Start ``cmd`` in the checkout with stdout and stderr in ``log``; add it to ``procs``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        p = subprocess.Popen(
            list(cmd),
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else daemon_env(),
        )
    procs.append(p)
    return p


def log_tail(path: Path, n: int = 15) -> str:
    """The last ``n`` lines of a log, for an error message ('' when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class Watched:
    """A started process with the name and log its error messages quote."""

    def __init__(self, proc: subprocess.Popen, name: str, log: Path) -> None:
        self.proc, self.name, self.log = proc, name, log

    def failed(self, what: str) -> BenchError:
        return BenchError(f"{self.name} {what}:\n" + log_tail(self.log))


def wait_exit(
    main: Watched, timeout_s: float, *, others: Sequence[Watched] = (), what: str = ""
) -> None:
    """Wait for ``main`` to exit with 0 within ``timeout_s``; a non-zero exit, the timeout,
    or one of ``others`` (the server it talks to) exiting first raises :class:`BenchError`
    quoting the right log. ``what`` says what it was doing (" 40 frames")."""
    deadline = time.monotonic() + timeout_s
    while main.proc.poll() is None:
        for o in others:
            if o.proc.poll() is not None:
                raise o.failed(f"exited with {o.proc.returncode}")
        if time.monotonic() > deadline:
            raise main.failed(f"did not finish{what} in {timeout_s:.0f} s")
        time.sleep(POLL_S)
    if main.proc.returncode != 0:
        raise main.failed(f"exited with {main.proc.returncode}")


def wait_listening(w: Watched, timeout_s: float = 180.0) -> dict:
    """Wait for the server's ``listening`` JSON event in its log and return it; the process
    exiting first, or the timeout (then it is killed), raises :class:`BenchError`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if w.proc.poll() is not None:
            raise w.failed(f"exited with {w.proc.returncode} before listening")
        event = listening_event(w.log)
        if event is not None:
            return event
        time.sleep(POLL_S)
    w.proc.kill()
    w.proc.wait()
    raise w.failed(f"did not start listening within {timeout_s:.0f} s")


def listening_event(log: Path) -> dict | None:
    """The server's ``{"event": "listening", ...}`` line from its log, if written yet."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "listening":
            return event
    return None


def stop(w: Watched, timeout_s: float = 30.0) -> None:
    """SIGTERM and require a clean exit (0) within ``timeout_s``: a daemon that cannot shut
    down cleanly is a finding, not something to paper over with SIGKILL."""
    w.proc.send_signal(signal.SIGTERM)
    try:
        rc = w.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{w.name} did not stop within {timeout_s:.0f} s of SIGTERM") from None
    if rc != 0:
        raise w.failed(f"exited with {rc} after SIGTERM")
