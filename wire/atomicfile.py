"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every output splitfit produces (manifests, metrics JSON, run summaries, plots, checkpoints)
goes through here, so a crash, a full disk or a Ctrl-C never leaves a truncated file behind.
The temporary file sits in the target's folder (``os.replace`` is only atomic within one
file system), keeps the target's suffix (matplotlib picks the format from it), gets the mode
``open()`` would give under the current umask (``mkstemp``'s 0600 would lock out the board
daemon's own user), and is removed if writing fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=target.suffix or ".tmp", dir=target.parent
    )
    tmp = Path(name)
    try:
        os.fchmod(fd, default_file_mode())
        os.close(fd)
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return write_atomic(path, write)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj, indent=2, **dumps_kwargs)`` plus a final newline, atomically."""
    dumps_kwargs.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs) + "\n")
