"""``tomllib`` on every Python the board side supports: the stdlib from 3.11, ``tomli`` below.

Why a module: Raspberry Pi OS bullseye ships 3.9 and JetPack 6 ships 3.10, neither has
``tomllib``; ``tomli`` is the same parser (it became ``tomllib``) and is installed there by an
environment marker in the package's dependencies. Callers write
``from wire.tomlcompat import tomllib`` and use ``tomllib.loads`` / ``TOMLDecodeError`` as usual.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib  # novm: only reached on 3.11+ (vermin cannot read the guard)
else:  # pragma: no cover - exercised by the Python 3.9/3.10 device-venv test
    import tomli as tomllib

__all__ = ["tomllib"]
