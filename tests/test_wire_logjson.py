"""wire.logjson: one record shape, one rate limit, warnings and crashes as JSON."""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import warnings

from wire.logjson import JsonFormatter, RateLimitFilter, get_logger, log_to


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_record_shape_with_fields_reserved_names_and_nan() -> None:
    stream = io.StringIO()
    with log_to(stream, "info"):
        log = get_logger("device.daemon")
        log.debug("hidden")
        log.info("ready", after_s=0.4, name="head-a")
        log.warning("odd", "a sentence for people", level="x", loss=math.nan)
    first, second = _lines(stream)
    assert list(first)[:5] == ["ts", "level", "logger", "event", "message"]
    assert first["level"] == "info" and first["logger"] == "device.daemon"
    assert first["event"] == "ready" and first["message"] == "ready"
    assert first["after_s"] == 0.4 and first["name"] == "head-a"  # 'name' would break extra=
    assert second["message"] == "a sentence for people" and second["level"] == "warning"
    assert second["level_"] == "x"  # a field never overwrites the envelope
    assert second["loss"] is None  # strict JSON: no NaN


def test_foreign_records_and_exceptions_stay_one_line() -> None:
    stream = io.StringIO()
    with log_to(stream, "info"):
        logging.getLogger("some.library").info("plain %s", "text")
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            get_logger("x").exception("crashed", where="here")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    plain, crash = (json.loads(line) for line in lines)
    assert plain["event"] == "log" and plain["message"] == "plain text"
    assert crash["level"] == "error" and crash["where"] == "here"
    assert "ValueError: boom" in crash["exception"] and "Traceback" in crash["exception"]


def test_rate_limit_per_logger_and_event_with_suppressed_count() -> None:
    now = [100.0]
    limit = RateLimitFilter(3, clock=lambda: now[0])
    fmt = JsonFormatter()

    def record(name: str, event: str) -> logging.LogRecord:
        r = logging.LogRecord(name, logging.WARNING, __file__, 1, event, None, None)
        r.event = event
        return r

    admitted = [limit.filter(record("server.app", "decode_failed")) for _ in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert limit.filter(record("server.app", "other"))  # another event has its own budget
    assert limit.filter(record("hardware.camera.base", "decode_failed"))  # another logger too
    now[0] += 1.0
    r = record("server.app", "decode_failed")
    assert limit.filter(r)
    assert json.loads(fmt.format(r))["suppressed_before"] == 7


def test_camera_and_led_events_obey_the_level_and_the_rate_limit() -> None:
    """They used to print straight to stderr, past the daemon's level and rate limit."""
    from gpiozero.pins.mock import MockFactory

    from hardware.status import LedState, StatusLED

    stream = io.StringIO()
    led = StatusLED(17, pin_factory=MockFactory())
    try:
        with log_to(stream, "warning"):
            led.set_state(LedState.STREAMING)
        assert stream.getvalue() == ""  # info events below the configured level
        with log_to(stream, "info", max_per_second=2):
            for state in [LedState.ERROR, LedState.STREAMING] * 5:
                led.set_state(state)
    finally:
        led.close()
    events = _lines(stream)
    assert [e["event"] for e in events] == ["led", "led"]
    assert events[0]["logger"] == "hardware.status" and events[0]["state"] == "ERROR"


def test_setup_routes_warnings_and_thread_crashes(monkeypatch) -> None:
    from wire import logjson

    stream = io.StringIO()
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr("sys.excepthook", __import__("sys").excepthook)
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        handler = logjson.setup_logging("info", stream=stream)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = logjson._show_warning  # catch_warnings saved the old one
            warnings.warn("overflow-ish", RuntimeWarning, stacklevel=1)
        t = threading.Thread(target=lambda: 1 / 0, name="worker")
        t.start()
        t.join()
    finally:
        root.removeHandler(handler)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    warning, crash = _lines(stream)
    assert warning["event"] == "python_warning" and warning["category"] == "RuntimeWarning"
    assert warning["message"] == "overflow-ish" and warning["line"] > 0
    assert crash["event"] == "uncaught_exception" and crash["thread"] == "worker"
    assert "ZeroDivisionError" in crash["exception"]
