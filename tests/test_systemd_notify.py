"""The real daemon, started the way splitfit-device.service starts it, talking to "systemd".

"systemd" is a unix datagram socket made by the test (NOTIFY_SOCKET), plus what systemd puts
in the environment: WATCHDOG_USEC, WATCHDOG_PID (the main PID: a shell sets it to ``$$`` and
``exec``s the daemon, so the PID stays the same) and the unit's ``Environment=``. The daemon is
the venv's ``splitfit-device`` console script, i.e. the unit's ExecStart with the venv path
localized, and it runs under the unit's seccomp policy (tests/support/sandbox.py). Its
peer is the device tests' ROUTER stand-in process speaking the real wire protocol.

What systemd needs from the daemon and what is checked here:
- READY=1 once the pipeline works (well inside TimeoutStartSec=), again after a reload;
- WATCHDOG=1 at least every WATCHDOG_USEC (systemd's interval wins over the config's);
- pings stop when the pipeline is wedged (so systemd restarts it) and come back when it
  moves again, but do not stop just because the server went away (a restart would not help);
- SIGHUP (ExecReload=) -> RELOADING=1 ... READY=1, same PID;
- SIGTERM -> STOPPING=1 and exit status 0 (so Restart=on-failure leaves it stopped).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import sys
import sysconfig
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.device_side import Proc, cached_head, start_peer
from support.sandbox import (
    DEVICE_UNIT,
    exec_start,
    filesystem_emulation_supported,
    sandboxed,
    time_span,
    unit_env,
    unit_settings,
    with_unit_filesystem,
)
from support.unit_marks import needs_sandbox, needs_unit_fs

from benchmarks.ports import free_port

ROOT = Path(__file__).resolve().parents[1]

pytestmark = needs_sandbox


class SystemdStandIn:
    """The notification socket systemd would hold, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.path = str(path)
        self.t0 = time.monotonic()
        self.messages: list[tuple[float, list[str]]] = []

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic() - self.t0, data.decode().split("\n")))

    def pump_until(self, line: str, timeout: float, proc: Proc | None = None) -> float | None:
        """Pump until a datagram containing ``line`` arrives; its time, or None (also when
        ``proc`` exits first)."""
        end = time.monotonic() + timeout
        seen = len(self.messages)
        while time.monotonic() < end and (proc is None or proc.p.poll() is None):
            self.pump(0.05)
            for t, lines in self.messages[seen:]:
                if line in lines:
                    return t
            seen = len(self.messages)
        return None

    def times(self, line: str, after: float = 0.0) -> list[float]:
        return [t for t, lines in self.messages if line in lines and t >= after]

    def lines(self) -> list[str]:
        return [ln for _, lines in self.messages for ln in lines]

    def now(self) -> float:
        return time.monotonic() - self.t0

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_head(tmp_path_factory.getbasetemp())[0]


def write_config(path: Path, model: Path, port: int, device: str, server: str) -> Path:
    path.write_text(
        "[device]\n"
        f"{device}\n"
        '[camera]\nsource = "synthetic"\n[camera.params]\nwidth = 64\nheight = 48\nfps = 30.0\n'
        f'[[heads]]\nmodel = "{model}"\n'
        f'[server]\nendpoints = ["tcp://127.0.0.1:{port}"]\n'
        "reconnect_min_s = 0.05\nreconnect_max_s = 0.5\nhello_timeout_s = 0.5\n"
        f"{server}\n"
        '[gpio]\npin_factory = "mock"\n'
    )
    return path


def start_as_unit(
    config: Path, notify: SystemdStandIn, watchdog_usec: int, *, fs: Path | None = None
) -> Proc:
    """ExecStart= under the unit's seccomp policy, with systemd's environment.

    With ``fs``, also under the unit's file-system view (``with_unit_filesystem``): ``fs``
    appears as ``/media`` and everything but ``/media/state`` and ``/media/log`` is read-only.
    """
    argv = exec_start(DEVICE_UNIT)
    config_at = argv.index("--config") + 1
    argv[config_at] = str(config)
    cmd = sandboxed(
        DEVICE_UNIT, "/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh", *argv
    )
    if fs is not None:
        cmd = with_unit_filesystem(fs, ("state", "log"), cmd)
    env = {
        **unit_env(DEVICE_UNIT),
        "NOTIFY_SOCKET": notify.path,
        "WATCHDOG_USEC": str(watchdog_usec),
        "PYTHONPATH": str(ROOT),
    }
    return Proc(cmd, env=env)


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@dataclass
class UnitRun:
    """A daemon running as the unit, with its server peer and systemd's notify socket."""

    daemon: Proc
    peer: Proc
    notify: SystemdStandIn
    t_ready: float  # when READY=1 arrived (notify clock)

    def stop(self, timeout: float = 10.0, settle: float = 0.2) -> None:
        """``systemctl stop``: SIGTERM, keep listening ``settle`` s for the last datagrams.

        Exit status 0 is required: anything else and Restart=on-failure would start it again.
        """
        rc = self.daemon.stop(signal.SIGTERM, timeout=timeout)
        if settle:
            self.notify.pump(settle)
        assert rc == 0, f"exit {rc}; stderr: {self.daemon.err[-10:]}"


def start_with_peer(
    tmp_path: Path, head: Path, device: str, server: str, watchdog_usec: int
) -> tuple[Proc, Proc, SystemdStandIn]:
    """A server peer, systemd's socket and the daemon as the unit with ``device``/``server``
    config lines, in the order ``ready_unit`` takes them."""
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    notify = SystemdStandIn(tmp_path / "notify.sock")
    cfg = write_config(tmp_path / "device.toml", head, port, device, server)
    return start_as_unit(cfg, notify, watchdog_usec), peer, notify


@contextlib.contextmanager
def ready_unit(
    daemon: Proc, peer: Proc, notify: SystemdStandIn, ready_timeout: float = 60.0
) -> Iterator[UnitRun]:
    """Wait for the daemon's READY=1, then hand over; whatever happens, the daemon and the
    peer are killed and the socket closed on the way out."""
    try:
        t_ready = notify.pump_until("READY=1", timeout=ready_timeout, proc=daemon)
        assert t_ready is not None, f"no READY=1; daemon stderr: {daemon.err[-10:]}"
        yield UnitRun(daemon, peer, notify, t_ready)
    finally:
        daemon.kill()
        peer.kill()
        notify.close()


def install_for_media(fs: Path, subdir: str, head: Path, port: int) -> Path:
    """The head and ``device.toml`` in ``fs/subdir``, written as the daemon sees them under
    ``with_unit_filesystem`` (``fs`` as /media): metrics and summary in the writable
    ``log``/``state`` directories. Returns the config's path as the daemon sees it."""
    target = fs / subdir
    for src in (head, head.with_suffix(".json")):
        shutil.copy(src, target / src.name)
    write_config(
        target / "device.toml",
        Path("/media", subdir, head.name),
        port,
        'stall_timeout_s = 5.0\nsummary_path = "/media/state/run.json"',
        'heartbeat_s = 0.5\n[metrics]\npath = "/media/log/frames.jsonl"',
    )
    return Path("/media", subdir, "device.toml")


def assert_ran_and_logged(unit: UnitRun, fs: Path) -> None:
    """After a stop: pings kept coming, frames reached the log directory, and the summary in
    the state directory says the run ended on the signal."""
    assert len(unit.notify.times("WATCHDOG=1", after=unit.t_ready)) >= 3
    frames = (fs / "log" / "frames.jsonl").read_text().splitlines()
    assert len(frames) >= 3, frames
    assert json.loads((fs / "state" / "run.json").read_text())["reason"] == "signal"


def test_daemon_as_a_unit_ready_watchdog_reload_stop(head: Path, tmp_path: Path) -> None:
    # The config asks for a 5 s ping period; systemd's 1 s watchdog must win (pings <= 0.5 s).
    daemon, peer, notify = start_with_peer(
        tmp_path,
        head,
        "watchdog_interval_s = 5.0\nstall_timeout_s = 5.0\nstartup_timeout_s = 20.0",
        "heartbeat_s = 0.5",
        1_000_000,
    )
    timeout_start = time_span(unit_settings(DEVICE_UNIT)["TimeoutStartSec"][-1])
    with ready_unit(daemon, peer, notify, ready_timeout=min(timeout_start, 60)) as unit:
        t_ready = unit.t_ready
        notify.pump(2.5)
        pid = daemon.p.pid
        status = Path(f"/proc/{pid}/status").read_text()
        assert "\nSeccomp:\t2\n" in status and "\nNoNewPrivs:\t1\n" in status  # sandboxed
        assert (
            Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1].endswith(b"splitfit-device")
        )
        t_hup = notify.now()
        os.kill(pid, signal.SIGHUP)  # ExecReload=/bin/kill -HUP $MAINPID
        t_ready2 = notify.pump_until("READY=1", timeout=20, proc=daemon)
        assert t_ready2 is not None, f"no READY=1 after reload: {daemon.err[-10:]}"
        notify.pump(1.5)
        assert daemon.p.poll() is None and daemon.p.pid == pid
        t_term = notify.now()
        unit.stop(timeout=time_span(unit_settings(DEVICE_UNIT)["TimeoutStopSec"][-1]), settle=0.3)
    assert not any("Operation not permitted" in ln for ln in daemon.err), daemon.err[-10:]

    pings = notify.times("WATCHDOG=1", after=t_ready)
    before_hup = [t for t in pings if t < t_hup]
    assert len(before_hup) >= 4, pings  # 2.5 s at <= 0.5 s
    assert max(_gaps(before_hup)) <= 0.75, _gaps(before_hup)  # half of WATCHDOG_USEC + slack
    # Through the reload the pings never left systemd's 1 s window.
    around_reload = [t for t in pings if t_ready <= t <= t_term]
    assert max(_gaps(around_reload)) < 1.0, _gaps(around_reload)

    lines = notify.lines()
    assert lines.count("READY=1") == 2
    reloading = [t for t, ls in notify.messages if "RELOADING=1" in ls]
    assert len(reloading) == 1 and t_hup <= reloading[0] <= t_ready2
    assert any(ln.startswith("STATUS=") for ln in lines)
    stopping = notify.times("STOPPING=1")
    assert len(stopping) == 1 and stopping[0] >= t_term
    assert notify.times("WATCHDOG=1", after=stopping[0]) == []


def test_wedged_pipeline_stops_pings_until_it_moves_again(head: Path, tmp_path: Path) -> None:
    """The server freezes (SIGSTOP) with frames in flight: the window fills, nothing moves.

    Session-loss detection is set far away (30 s) and replies never time out, so the only
    thing that can notice is the watchdog: pings must stop after stall_timeout_s. When the
    server thaws, replies free the window and the pings come back.
    """
    daemon, peer, notify = start_with_peer(
        tmp_path,
        head,
        "stall_timeout_s = 1.0",
        "window = 2\nreply_timeout_s = 60.0\nheartbeat_s = 1.0\nheartbeat_misses = 30",
        600_000,  # pings every 0.3 s
    )
    with ready_unit(daemon, peer, notify) as unit:
        notify.pump(1.0)
        t_freeze = notify.now()
        os.kill(peer.p.pid, signal.SIGSTOP)
        try:
            notify.pump(3.5)
            t_thaw = notify.now()
        finally:
            os.kill(peer.p.pid, signal.SIGCONT)
        t_back = notify.pump_until("WATCHDOG=1", timeout=5)
        notify.pump(0.5)
        unit.stop()
    before = notify.times("WATCHDOG=1", after=unit.t_ready)
    assert [t for t in before if t < t_freeze], "no pings while frames flowed"
    # stall_timeout 1 s + one ping period 0.3 s + slack: silence from then until the thaw.
    silent_from = t_freeze + 1.0 + 0.3 + 0.4
    during = [t for t in before if silent_from <= t < t_thaw]
    assert during == [], f"pinged while wedged at {during} (freeze {t_freeze:.2f})"
    assert t_back is not None and t_back - t_thaw < 3.0, "pings did not come back after the thaw"
    assert any(e.get("event") == "pipeline_stalled" for e in daemon.events("err"))


def test_server_outage_is_not_a_reason_to_restart(head: Path, tmp_path: Path) -> None:
    """Server killed: the daemon sees the session drop and keeps its loop (and pings) going.

    A restart by systemd would not bring the server back, so the watchdog must not fire.
    """
    daemon, peer, notify = start_with_peer(
        tmp_path,
        head,
        "stall_timeout_s = 2.0",
        "heartbeat_s = 0.2\nheartbeat_misses = 3\nreply_timeout_s = 1.0",
        600_000,
    )
    with ready_unit(daemon, peer, notify) as unit:
        notify.pump(0.5)
        t_kill = notify.now()
        peer.kill()
        notify.pump(4.0)
        t_end = notify.now()
        unit.stop(settle=0)
    pings = notify.times("WATCHDOG=1", after=t_kill)
    assert pings and pings[-1] > t_end - 1.0, "pings stopped during the outage"
    assert max(_gaps([t_kill, *pings])) < 0.6 * 2, _gaps(pings)  # never near systemd's deadline
    statuses = [
        ln for t, ls in notify.messages if t > t_kill + 1.0 for ln in ls if ln.startswith("STATUS=")
    ]
    assert statuses and "server=ready" not in statuses[-1], statuses[
        -3:
    ]  # systemctl status shows it


@needs_unit_fs
def test_daemon_works_on_the_units_read_only_file_system(head: Path, tmp_path: Path) -> None:
    """Everything read-only but the state and logs directories: the daemon must still work,
    and its metrics/summary land in those directories (where device.toml must point them)."""
    fs = tmp_path / "fs"
    for sub in ("state", "log"):
        (fs / sub).mkdir(parents=True)
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    notify = SystemdStandIn(fs / "notify.sock")
    notify.path = "/media/notify.sock"  # where the daemon sees it
    config = install_for_media(fs, "", head, port)
    daemon = start_as_unit(config, notify, 1_000_000, fs=fs)
    with ready_unit(daemon, peer, notify) as unit:
        notify.pump(2.0)
        unit.stop()
    assert_ran_and_logged(unit, fs)
    assert notify.times("STOPPING=1")
    problems = [e for e in daemon.events("err") if e.get("level") in ("error", "warning")]
    assert problems == [], problems
    assert not any("Read-only file system" in ln for ln in daemon.err), daemon.err[-10:]


SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
SERVICE_UID = SERVICE_GID = 65534  # stands in for the splitfit user and group


@pytest.mark.skipif(
    filesystem_emulation_supported() is not None or shutil.which("setpriv") is None,
    reason=f"needs root, unshare(1) and setpriv(1): {filesystem_emulation_supported()}",
)
@pytest.mark.skipif(
    not SYSTEM_PYTHON.exists(), reason=f"no {SYSTEM_PYTHON} to run as an unprivileged user"
)
def test_daemon_as_the_units_user_with_the_installed_permissions(
    head: Path, tmp_path: Path
) -> None:
    """User=/Group= and CapabilityBoundingSet= too: an unprivileged uid with no capabilities
    reads the config through its group (install.sh: /etc/splitfit root:splitfit 0750, files
    0640) and writes only its State/LogsDirectory (systemd chowns those to User=).

    This test's venv interpreter may live under /root (pyenv, mode 0700), where no other user
    can reach it, so the daemon runs as ``SYSTEM_PYTHON -m device.cli`` with the venv's
    site-packages on PYTHONPATH, as the unit's ExecStart would on a board whose venv was made
    from /usr/bin/python3. /root and /home are hidden (ProtectHome=yes).
    """
    fs = tmp_path / "fs"
    etc = fs / "etc"
    etc.mkdir(parents=True)
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    notify = SystemdStandIn(fs / "notify.sock")
    os.chmod(notify.path, 0o777)  # like /run/systemd/notify
    notify.path = "/media/notify.sock"
    config = install_for_media(fs, "etc", head, port)
    os.chmod(fs, 0o755)
    os.chown(etc, 0, SERVICE_GID)
    os.chmod(etc, 0o750)
    for f in etc.iterdir():
        os.chown(f, 0, SERVICE_GID)
        os.chmod(f, 0o640)
    for sub in ("state", "log"):
        (fs / sub).mkdir()
        os.chown(fs / sub, SERVICE_UID, SERVICE_GID)
        os.chmod(fs / sub, 0o750)

    drop = [
        "setpriv",
        f"--reuid={SERVICE_UID}",
        f"--regid={SERVICE_GID}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]
    daemon_cmd = [str(SYSTEM_PYTHON), "-m", "device.cli", "--config", str(config)]
    sandbox = [str(SYSTEM_PYTHON), str(Path(sandboxed(DEVICE_UNIT)[1])), str(DEVICE_UNIT)]
    watchdog_pid = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"]
    cmd = with_unit_filesystem(
        fs,
        ("state", "log"),
        [*drop, *sandbox, *watchdog_pid, *daemon_cmd],
        homes=["/root", "/home"],
    )
    env = {
        **unit_env(DEVICE_UNIT),
        "NOTIFY_SOCKET": notify.path,
        "WATCHDOG_USEC": "1000000",
        "PYTHONPATH": f"{ROOT}:{SITE_PACKAGES}",
        "HOME": "/media/state",
    }
    daemon = Proc(cmd, env=env)
    with ready_unit(daemon, peer, notify) as unit:
        status = Path(f"/proc/{daemon.p.pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert fields["Uid"].split()[0] == str(SERVICE_UID)
        assert fields["Gid"].split()[0] == str(SERVICE_GID)
        assert int(fields["CapBnd"], 16) == 0 and int(fields["CapEff"], 16) == 0
        assert fields["Seccomp"] == "2" and fields["NoNewPrivs"] == "1"
        notify.pump(2.0)
        unit.stop()
    assert_ran_and_logged(unit, fs)
    assert (fs / "log" / "frames.jsonl").stat().st_uid == SERVICE_UID
    assert not any("Permission denied" in ln for ln in daemon.err), daemon.err[-10:]


def test_example_config_fits_the_unit_timeouts() -> None:
    """The shipped config's own timers must fire before systemd's."""
    example = tomllib.loads((ROOT / "examples" / "device.toml").read_text())["device"]
    unit = unit_settings(DEVICE_UNIT)
    assert example["startup_timeout_s"] < time_span(unit["TimeoutStartSec"][-1])
    assert example["stall_timeout_s"] < time_span(unit["WatchdogSec"][-1])
    assert example["drain_timeout_s"] < time_span(unit["TimeoutStopSec"][-1])
