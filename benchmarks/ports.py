"""A free TCP port on 127.0.0.1, for benchmarks and tests that start a real server.

Why one function: the demo, the daemon benchmark and the test suite each bound their own
socket to port 0; this is the one copy (``tests/conftest.py`` hands it to tests as the
``free_port`` fixture). The port is free when returned, not reserved: a caller binds it soon.
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just gave out on ``host`` and that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
