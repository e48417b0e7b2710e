"""The project's one logging setup: stdlib ``logging``, one JSON line per record on stderr.

Why stdlib ``logging``: every module logs through ``logging.getLogger(__name__)``, so levels,
handlers and filters are set once by the program's ``main`` (not by each printer), and
records from libraries, from :mod:`warnings` and from uncaught exceptions take the same path.

Why JSON lines: journald (and any log shipper) keeps each line as one record, so every line a
service writes to stderr is one flat JSON object that ``jq`` can load::

    {"ts": 1700000000.123456, "level": "info", "logger": "device.daemon",
     "event": "ready", "message": "ready", "reason": "...", "after_s": 0.41}

``event`` is a stable machine name (grep for it); ``message`` is the human sentence (the
event name when the caller gave none); any further keys are the event's fields.

Why rate limiting: a misbehaving or hostile peer can cause thousands of identical events per
second; each is counted in the metrics, but logging every one would turn stderr into the
bottleneck (and fill the disk). :class:`RateLimitFilter` admits at most ``max_per_second``
records per (logger, event) and reports the number suppressed on the next admitted one.

Lives in ``wire/`` because that is the lowest layer: the board side (``hardware``,
``device``), the server and the training tools may all import it. No torch, no tensorflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TextIO

__all__ = [
    "LEVELS",
    "EventLogger",
    "JsonFormatter",
    "JsonHandler",
    "RateLimitFilter",
    "get_logger",
    "log_to",
    "set_level",
    "setup_logging",
]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# Keys of the fixed record shape; an event field with one of these names is renamed
# ``<name>_`` instead of silently replacing the envelope.
_RESERVED = ("ts", "level", "logger", "event", "message")
WARNING_EVENT = "python_warning"
UNCAUGHT_EVENT = "uncaught_exception"


# ------------------------------------------------------------------------------ loggers
class EventLogger:
    """A ``logging.Logger`` that takes an event name plus fields: ``log.info("ready", n=3)``.

    Why a wrapper and not ``logger.info(msg, extra={...})`` at every call site: ``extra``
    keys land on the ``LogRecord`` itself and stdlib refuses (``KeyError``) names such as
    ``name``, ``args`` or ``message`` that our events use; here the fields travel as one
    ``record.fields`` dict. Level checks happen before any record is built, so a disabled
    debug event costs one comparison.
    """

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    @property
    def name(self) -> str:
        return self.logger.name

    def isEnabledFor(self, level: int) -> bool:  # the stdlib logger's spelling
        return self.logger.isEnabledFor(level)

    def log(self, level: int, event: str, /, message: str | None = None, **fields: Any) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level,
                message if message is not None else event,
                extra={"event": event, "fields": fields},
            )

    def debug(self, event: str, /, message: str | None = None, **fields: Any) -> None:
        self.log(logging.DEBUG, event, message, **fields)

    def info(self, event: str, /, message: str | None = None, **fields: Any) -> None:
        self.log(logging.INFO, event, message, **fields)

    def warning(self, event: str, /, message: str | None = None, **fields: Any) -> None:
        self.log(logging.WARNING, event, message, **fields)

    def error(self, event: str, /, message: str | None = None, **fields: Any) -> None:
        self.log(logging.ERROR, event, message, **fields)

    def exception(self, event: str, /, message: str | None = None, **fields: Any) -> None:
        """An error with the current exception's traceback in the ``exception`` field."""
        if self.logger.isEnabledFor(logging.ERROR):
            self.logger.error(
                message if message is not None else event,
                extra={"event": event, "fields": fields},
                exc_info=True,
            )


def get_logger(name: str) -> EventLogger:
    """``get_logger(__name__)``: the module's stdlib logger, taking events and fields."""
    return EventLogger(logging.getLogger(name))


# ------------------------------------------------------------------------------ formatter
def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: a non-finite float becomes ``null`` (strict parsers choke)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """Any ``LogRecord`` -> one line of JSON in the project's one record shape.

    Records from :class:`EventLogger` carry ``event`` and ``fields``; records from other
    code (libraries, ``logger.info("text")``) get ``event = "log"`` and their text as
    ``message``; warnings routed by :func:`setup_logging` get ``event = "python_warning"``.
    An exception, if any, is one string field (newlines escaped), never extra lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None) or {}
        for key, value in fields.items():
            out[f"{key}_" if key in _RESERVED else key] = value
        suppressed = getattr(record, "suppressed_before", 0)
        if suppressed:
            out["suppressed_before"] = suppressed
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["exception"] = record.exc_text
        try:
            return json.dumps(out, default=str, separators=(",", ":"), allow_nan=False)
        except ValueError:  # a NaN/inf somewhere in the fields
            return json.dumps(_finite(out), default=str, separators=(",", ":"))


# ------------------------------------------------------------------------------ rate limit
class RateLimitFilter(logging.Filter):
    """At most ``max_per_second`` records per (logger, event) in each clock second.

    The first record admitted after a suppressed stretch carries ``suppressed_before`` (how
    many were dropped), so the log still says how often it happened. ``clock`` is
    injectable so tests step time instead of sleeping.
    """

    def __init__(
        self, max_per_second: int = 20, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        if max_per_second < 1:
            raise ValueError(f"max_per_second must be >= 1, got {max_per_second}")
        self.max_per_second = max_per_second
        self._clock = clock
        self._lock = threading.Lock()
        # (logger, event) -> (second, admitted, suppressed)
        self._window: dict[tuple[str, str], tuple[int, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, getattr(record, "event", None) or "log")
        second = int(self._clock())
        with self._lock:
            window, admitted, suppressed = self._window.get(key, (second, 0, 0))
            if window != second:
                if suppressed:
                    record.suppressed_before = suppressed
                window, admitted, suppressed = second, 0, 0
            if admitted >= self.max_per_second:
                self._window[key] = (window, admitted, suppressed + 1)
                return False
            self._window[key] = (window, admitted + 1, suppressed)
            if len(self._window) > 4096:  # bounded: event names are a closed set, but be safe
                self._window = {k: v for k, v in self._window.items() if v[0] == second}
        return True


# ------------------------------------------------------------------------------ handler
class JsonHandler(logging.Handler):
    """Writes formatted records to a stream, ``sys.stderr`` looked up at write time.

    Looked up late so that a redirected stderr (pytest's capture, a test's ``StringIO``)
    is honoured; a closed or broken stderr drops the line instead of raising into the
    caller or printing a plain-text "--- Logging error ---" block.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a field whose str() raises must not take the caller down
            line = json.dumps(
                {
                    "ts": round(record.created, 6),
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "event": "log_format_failed",
                    "message": repr(record.msg)[:300],
                }
            )
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(line + "\n")
            self.stream.flush()


# ------------------------------------------------------------------------------ setup
def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level]
    except KeyError:
        raise ValueError(f"log level must be one of {sorted(LEVELS)}, got {level!r}") from None


def set_level(level: str | int) -> None:
    """Change the level of every logger (the root's), e.g. on a config reload."""
    logging.getLogger().setLevel(_level(level))


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` replacement: a warning is a structured log record.

    Not ``logging.captureWarnings``: that logs the multi-line ``formatwarning`` text as the
    message; here category, file and line are fields a query can use.
    """
    logging.getLogger("py.warnings").warning(
        str(message),
        extra={
            "event": WARNING_EVENT,
            "fields": {"category": category.__name__, "file": filename, "line": lineno},
        },
    )


def _log_uncaught(
    exc_type: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
    thread: str | None = None,
) -> None:
    fields: dict[str, Any] = {"error": f"{exc_type.__name__}: {exc}"}
    if thread is not None:
        fields["thread"] = thread
    logging.getLogger("uncaught").critical(
        f"uncaught {exc_type.__name__}",
        exc_info=(exc_type, exc, tb),
        extra={"event": UNCAUGHT_EVENT, "fields": fields},
    )


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    _log_uncaught(exc_type, exc, tb)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else None
    _log_uncaught(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback, thread)


def _install(handler: JsonHandler, level: str | int) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, JsonHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level(level))


def _handler(stream: TextIO | None, max_per_second: int) -> JsonHandler:
    handler = JsonHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RateLimitFilter(max_per_second))
    return handler


def setup_logging(
    level: str | int = "info",
    *,
    stream: TextIO | None = None,
    max_per_second: int = 20,
) -> JsonHandler:
    """Called once by each program's ``main``: every stderr line becomes one JSON object.

    Installs the JSON handler (with the rate limit) on the root logger, replacing one a
    previous call installed, routes :mod:`warnings` and uncaught exceptions (main thread
    and other threads) through it. Returns the handler.
    """
    handler = _handler(stream, max_per_second)
    _install(handler, level)
    warnings.showwarning = _show_warning
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    return handler


@contextlib.contextmanager
def log_to(
    stream: TextIO, level: str | int = "debug", *, max_per_second: int = 20
) -> Iterator[JsonHandler]:
    """For tests and benchmarks: records go as JSON lines to ``stream`` inside the block.

    The same formatter and rate limit as :func:`setup_logging`; the previous handlers and
    level are restored on exit (hooks are left alone: the caller owns its process).
    """
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    handler = _handler(stream, max_per_second)
    _install(handler, level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for h in saved_handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved_level)
