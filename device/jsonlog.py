"""One-line JSON logs to stderr (journald keeps each line as one record).

Why not ``logging`` handlers alone: every record must be a single parseable JSON object with
flat fields, so the summary line and switch events can be grepped and loaded with ``jq``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLog:
    """``log.info("event", key=value, ...)`` -> ``{"ts":..., "level":"info", "event":...}``."""

    def __init__(self, level: str = "info", stream: TextIO | None = None) -> None:
        self.level = _LEVELS[level]
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def set_level(self, level: str) -> None:
        self.level = _LEVELS[level]

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if _LEVELS[level] < self.level:
            return
        record = {"ts": round(time.time(), 3), "level": level, "event": event, **fields}
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not take the daemon down

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)
