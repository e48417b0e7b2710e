"""systemd ``sd_notify`` client speaking the NOTIFY_SOCKET datagram protocol directly.

Why not a library: the protocol is one datagram of ``KEY=VALUE`` lines to a unix socket, and
the board install should not grow a dependency for it. Abstract-namespace sockets (an ``@``
prefix in NOTIFY_SOCKET) are mapped to a leading NUL byte, as systemd does.

Without NOTIFY_SOCKET (not started by systemd) every call is a cheap no-op, so the daemon
runs the same way from a shell.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping


class Notifier:
    """Sends state changes to systemd; never raises (a lost notification must not kill us)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if path.startswith("@"):
            self._address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self._address = path
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.errors = 0
        self.watchdog_interval_s = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str, **fields: object) -> bool:
        """Send ``lines`` (``"READY=1"``) and ``fields`` (``STATUS="..."``) in one datagram."""
        if self._address is None:
            return False
        parts = list(lines) + [f"{k}={v}" for k, v in fields.items()]
        payload = "\n".join(p.replace("\n", " ") for p in parts).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                self._sock.sendto(payload, self._address)
            except OSError:
                self.errors += 1
                return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC (systemd's advice), or None when the watchdog is not for us."""
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None
