"""One-line JSON logs to stderr, with optional per-event rate limiting.

Why not ``logging`` handlers alone: journald (and any log shipper) keeps each line as one
record, and every record must be a single parseable JSON object with flat fields, so the
summary line and switch events can be grepped and loaded with ``jq``.

Why rate limiting: a misbehaving or hostile peer can cause thousands of identical events per
second; each is counted in the metrics, but logging every one would turn stderr into the
bottleneck. Events logged with ``limited=True`` are capped per second and the number
suppressed is reported on the next admitted line.

Shared by the board daemon and the tail server (both long-running, both journald-bound);
it lives in ``device/`` because that package must stay lean and the server may import it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLog:
    """``log.info("event", key=value)`` -> ``{"ts":…, "level":"info", "event":"event", …}``."""

    def __init__(
        self,
        level: str = "info",
        stream: TextIO | None = None,
        *,
        name: str | None = None,
        max_per_second: int = 20,
    ) -> None:
        self.name = name
        self.level = LEVELS[level]
        self._stream = stream
        self._lock = threading.Lock()
        self._max_per_second = max_per_second
        self._window: dict[str, tuple[int, int, int]] = {}  # event -> (second, emitted, suppressed)

    @property
    def stream(self) -> TextIO:
        # Resolved at write time so a redirected stderr (pytest's capsys) is honoured.
        return self._stream if self._stream is not None else sys.stderr

    def set_level(self, level: str) -> None:
        self.level = LEVELS[level]

    def log(self, level: str, event: str, *, limited: bool = False, **fields: Any) -> None:
        if LEVELS[level] < self.level:
            return
        with self._lock:
            if limited and not self._admit(event, fields):
                return
            record: dict[str, Any] = {"ts": round(time.time(), 6), "level": level}
            if self.name is not None:
                record["logger"] = self.name
            record["event"] = event
            record.update(fields)
            try:
                self.stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not take the process down

    def _admit(self, event: str, fields: dict[str, Any]) -> bool:
        second = int(time.monotonic())
        window, emitted, suppressed = self._window.get(event, (second, 0, 0))
        if window != second:
            if suppressed:
                fields["suppressed_before"] = suppressed
            window, emitted, suppressed = second, 0, 0
        if emitted >= self._max_per_second:
            self._window[event] = (window, emitted, suppressed + 1)
            return False
        self._window[event] = (window, emitted + 1, suppressed)
        return True

    def debug(self, event: str, **fields: Any) -> None:
        self.log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)
