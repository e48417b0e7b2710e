"""Where the daemon will write (metrics JSONL, power log), checked without writing anything.

Why: ``splitfit-device --check`` must leave the disk exactly as it found it, yet a log path in
a directory the service user cannot write should still fail at startup with one clear line,
not minutes later as a traceback. So the daemon checks its output paths when it is built and
opens (and creates) them only when it runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from device.config import ConfigError


def check_writable(path: Path | None, key: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` unless ``path`` could be created or appended.

    The file may exist (then it must be a writable file) or not (then its nearest existing
    ancestor must be a directory we may create entries in); nothing is created here.
    """
    if path is None:
        return
    if path.exists():
        if not path.is_file():
            raise ConfigError(f"{key}: {path} exists and is not a regular file")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{key}: {path} is not writable")
        return
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}: cannot create {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot create {path}: {parent} is not writable")
