"""One-line JSON logs on stderr, with per-event rate limiting.

Why: journald (and any log shipper) wants one event per line with machine-readable fields.
Why rate limiting: a misbehaving or hostile client can send thousands of bad messages per
second; each is counted in the metrics, but logging every one would turn stderr into the
bottleneck. Noisy events are capped per second and the number suppressed is reported.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLogger:
    """Thread-safe structured logger writing ``{"ts":…, "level":…, "event":…, …}`` lines."""

    def __init__(
        self,
        name: str = "splitfit-server",
        level: str = "info",
        stream: TextIO | None = None,
        max_per_second: int = 20,
    ) -> None:
        self.name = name
        self.threshold = LEVELS[level]
        self._stream = stream
        self._lock = threading.Lock()
        self._max_per_second = max_per_second
        self._window: dict[str, tuple[int, int, int]] = {}  # event -> (second, emitted, suppressed)

    @property
    def stream(self) -> TextIO:
        # Resolved at write time so pytest's capsys / redirected stderr is honoured.
        return self._stream if self._stream is not None else sys.stderr

    def log(self, level: str, event: str, *, limited: bool = False, **fields: Any) -> None:
        if LEVELS[level] < self.threshold:
            return
        with self._lock:
            if limited and not self._admit(event, fields):
                return
            record = {
                "ts": round(time.time(), 6),
                "level": level,
                "logger": self.name,
                "event": event,
                **fields,
            }
            try:
                self.stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must never take the server down

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
