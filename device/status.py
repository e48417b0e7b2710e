"""The GPIO status LED, seen from the daemon: one call per state change, never fatal.

Why a wrapper: an LED is a nicety; a GPIO permission problem or a missing pin factory must
be logged once and then ignored, not stop the pipeline.
"""

from __future__ import annotations

import contextlib
from typing import Any

from device.config import GpioSection
from device.jsonlog import JsonLog

STARTING = "STARTING"
STREAMING = "STREAMING"
SERVER_OFFLINE = "SERVER_OFFLINE"
ERROR = "ERROR"


class StatusIndicator:
    def __init__(self, cfg: GpioSection, log: JsonLog) -> None:
        self.log = log
        self.state: str | None = None
        self._led: Any = None
        self._states: Any = None
        if cfg.status_led is None:
            return
        try:
            from hardware import status as hw_status

            factory = None
            if cfg.pin_factory == "mock":
                from gpiozero.pins.mock import MockFactory

                factory = MockFactory()
            self._led = hw_status.StatusLED(cfg.status_led, pin_factory=factory)
            self._states = hw_status
        except Exception as exc:  # no GPIO on this machine: the daemon still runs
            log.warning(
                "status_led_unavailable", pin=cfg.status_led, error=f"{type(exc).__name__}: {exc}"
            )
            self._led = None

    @property
    def led(self) -> Any:
        return self._led

    def set(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self._led is None:
            return
        value = state
        for holder in ("LedState", "Status", "State"):
            enum = getattr(self._states, holder, None)
            if enum is not None and hasattr(enum, state):
                value = getattr(enum, state)
                break
        else:
            value = getattr(self._states, state, state)
        try:
            self._led.set_state(value)
        except Exception as exc:
            self.log.warning("status_led_failed", state=state, error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self._led is not None:
            with contextlib.suppress(Exception):
                self._led.close()
            self._led = None
