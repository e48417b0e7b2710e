"""The GPIO status LED, seen from the daemon: one call per state change, never fatal.

Why a wrapper: an LED is a nicety; a GPIO permission problem or a missing pin factory must
be logged once and then ignored, not stop the pipeline.
"""

from __future__ import annotations

from typing import Any

from device.config import GpioSection
from hardware.status import LedState, StatusLED
from wire.logjson import get_logger

STARTING = LedState.STARTING
STREAMING = LedState.STREAMING
SERVER_OFFLINE = LedState.SERVER_OFFLINE
ERROR = LedState.ERROR


class StatusIndicator:
    def __init__(self, cfg: GpioSection) -> None:
        self.log = get_logger(__name__)
        self.state: LedState | None = None
        self._led: StatusLED | None = None
        self.factory: Any = None
        if cfg.status_led is None:
            return
        try:
            if cfg.pin_factory == "mock":
                from gpiozero.pins.mock import MockFactory

                self.factory = MockFactory()
            self._led = StatusLED(cfg.status_led, pin_factory=self.factory)
        except Exception as exc:  # no GPIO on this machine: the daemon still runs
            self.log.warning(
                "status_led_unavailable",
                pin=cfg.status_led,
                error=f"{type(exc).__name__}: {exc}",
            )
            self._led = None

    @property
    def led(self) -> StatusLED | None:
        return self._led

    def set(self, state: LedState) -> None:
        if state is self.state:
            return
        self.state = state
        if self._led is None:
            return
        try:
            self._led.set_state(state)
        except Exception as exc:
            self.log.warning("status_led_failed", state=state.name, error=str(exc))

    def close(self) -> None:
        if self._led is not None:
            try:
                self._led.close()
            except Exception as exc:
                self.log.warning("status_led_close_failed", error=str(exc))
            self._led = None
