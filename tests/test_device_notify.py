"""sd_notify over a real unix datagram socket, and the daemon's READY/WATCHDOG/STOPPING."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import time
import uuid

from support.device_side import start_daemon, start_peer, write_config

from device.notify import Notifier


class NotifySocket:
    """What systemd would be: a datagram socket collecting notifications."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path if not path.startswith("@") else "\0" + path[1:])
        self.sock.settimeout(0.05)
        self.path = path
        self.messages: list[tuple[float, str]] = []

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [ln for _, m in self.messages for ln in m.split("\n")]

    def close(self) -> None:
        self.sock.close()


def test_notifier_sends_datagrams_to_a_path_socket(tmp_path):
    ns = NotifySocket(str(tmp_path / "notify.sock"))
    n = Notifier({"NOTIFY_SOCKET": ns.path})
    assert n.enabled
    assert n.ready(status="up") and n.watchdog() and n.stopping()
    ns.pump(0.2)
    assert [m for _, m in ns.messages] == ["READY=1\nSTATUS=up", "WATCHDOG=1", "STOPPING=1"]
    ns.close()


def test_notifier_abstract_namespace_socket():
    ns = NotifySocket(f"@splitfit-test-{uuid.uuid4().hex}")
    n = Notifier({"NOTIFY_SOCKET": ns.path})
    assert n.notify(STATUS="fps=3.0\nnewline")
    ns.pump(0.2)
    assert ns.lines() == ["STATUS=fps=3.0 newline"]  # a value can never inject a second line
    ns.close()


def test_notifier_without_socket_is_a_no_op_and_never_raises(tmp_path):
    assert not Notifier({}).enabled and Notifier({}).ready() is False
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.watchdog() is False and gone.errors == 1


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid():
    pid = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}).watchdog_interval_s == 1.0
    assert Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).watchdog_interval_s is None


def test_daemon_ready_watchdog_stopping_on_sigterm(head, tmp_path, free_port):
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    ns = NotifySocket(str(tmp_path / "n.sock"))
    cfg = write_config(tmp_path / "d.toml", head[0], port, "[device]\nwatchdog_interval_s = 0.2\n")
    d = start_daemon(cfg, "--summary", str(tmp_path / "s.json"), env={"NOTIFY_SOCKET": ns.path})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "READY=1" not in ns.lines():
            ns.pump(0.1)
        ns.pump(2.0)
        rc = d.stop(signal.SIGTERM)
        ns.pump(0.3)
    finally:
        d.kill()
        peer.kill()
        ns.close()
    assert rc == 0
    lines = ns.lines()
    assert lines.count("READY=1") == 1
    assert lines.count("WATCHDOG=1") >= 8  # every 0.2 s while frames flow
    assert lines[-2:] == ["STOPPING=1", lines[-1]] and lines[-1].startswith("STATUS=stopping")
    assert any(ln.startswith("STATUS=fps=") and "server=ready" in ln for ln in lines)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["reason"] == "signal"
    # The STATUS line names the partition running, the one chosen and why: the objective and
    # every partition's estimates (issue #22).
    name = summary["chosen_partition"]
    why = re.compile(rf"partition={name} chosen={name} objective=latency est={name}:\d+\.\dms/")
    assert any(why.search(ln) for ln in lines if ln.startswith("STATUS=fps=")), lines[-5:]


def test_stalled_pipeline_stops_watchdog_pings(head, tmp_path, free_port):
    """A camera that delivers one frame every 4 s: between frames the pipeline is stalled
    for longer than stall_timeout_s, so pings must stop — and resume with the next frame."""
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    ns = NotifySocket(str(tmp_path / "n.sock"))
    camera = (
        '[camera]\nsource = "synthetic"\n[camera.params]\nwidth = 32\nheight = 32\nfps = 0.25\n'
    )
    cfg = write_config(
        tmp_path / "d.toml",
        head[0],
        port,
        "[device]\nwatchdog_interval_s = 0.1\nstall_timeout_s = 1.0\n",
        camera=camera,
    )
    d = start_daemon(cfg, env={"NOTIFY_SOCKET": ns.path})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "WATCHDOG=1" not in ns.lines():
            ns.pump(0.1)
        ns.pump(6.5)  # > one camera period after the first ping
        d.stop(signal.SIGTERM)
        ns.pump(0.3)
    finally:
        d.kill()
        peer.kill()
        ns.close()
    pings = [t for t, m in ns.messages if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    # Pings every 0.1 s while frames move; a hole of ~3 s (4 s period - 1 s stall timeout)
    # while the pipeline waits; then pings again once the next frame went through.
    assert len(pings) >= 10
    assert max(gaps) > 2.0, gaps
    assert gaps.index(max(gaps)) < len(gaps) - 1  # pings resumed after the stall
    assert any(e.get("event") == "pipeline_stalled" for e in d.events("err"))


def test_ready_after_startup_timeout_when_no_server_answers(head, tmp_path, free_port):
    ns = NotifySocket(str(tmp_path / "n.sock"))
    cfg = write_config(
        tmp_path / "d.toml", head[0], free_port(), "[device]\nstartup_timeout_s = 1.0\n"
    )
    d = start_daemon(cfg, env={"NOTIFY_SOCKET": ns.path})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "READY=1" not in ns.lines():
            ns.pump(0.1)
        rc = d.stop(signal.SIGTERM)
        ns.pump(0.2)
    finally:
        d.kill()
        ns.close()
    assert rc == 0
    ready = next(m for _, m in ns.messages if m.startswith("READY=1"))
    assert "startup timeout" in ready
    assert any("server=offline" in ln for ln in ns.lines())
