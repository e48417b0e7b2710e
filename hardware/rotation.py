"""Size-based log rotation: ``FILE`` -> ``FILE.1`` -> … -> ``FILE.<backups>``, oldest dropped.

Why one helper: the daemon's per-frame metrics and the crash-safe power log both bound their
disk use on a small SD card the same way; the shift-and-drop was written twice. The writers
keep their own file handling (buffered text vs ``O_APPEND`` raw writes) and ask this module
only *when* to rotate and to do the renames.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["due", "rotate"]


def due(size: int, incoming: int, max_bytes: int) -> bool:
    """Whether writing ``incoming`` bytes to a file of ``size`` would pass ``max_bytes``.

    An empty file never rotates, so one record larger than ``max_bytes`` is still written.
    """
    return size > 0 and size + incoming > max_bytes


def rotate(path: Path, backups: int) -> None:
    """Shift ``path`` to ``path.1`` (``path.1`` to ``path.2``, …), dropping the oldest.

    With ``backups == 0`` the file is simply removed. The caller closes ``path`` first and
    reopens it afterwards; disk use stays below ``max_bytes * (backups + 1)``.
    """
    if backups == 0:
        path.unlink(missing_ok=True)
        return
    for k in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{k}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{k + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))
