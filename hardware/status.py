"""What the board tells a person standing next to it: a status LED and a pause button.

A headless board has no screen, so one LED carries the daemon's state. Each state has its
own rhythm *and* duty cycle, so they can be told apart at a glance without counting:

========================  =============  ===========================================
state                     on / off (s)   reads as
========================  =============  ===========================================
STARTING                  0.5 / 0.5      steady 1 Hz blink: booting, loading the model
STREAMING                 0.9 / 0.1      mostly on with a short blip: alive, sending
SERVER_OFFLINE            0.1 / 0.9      mostly off with a short flash: waiting for server
ERROR                     0.1 / 0.1      fast flicker: needs attention
========================  =============  ===========================================

The button toggles pause/resume (e.g. to stop streaming while repositioning the camera).
Both take a gpiozero ``pin_factory`` so the same code runs against real pins on a Pi and
against ``MockFactory`` in tests. Pin numbers come from the device config.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from gpiozero import LED, Button

from wire.logjson import get_logger


class LedState(Enum):
    STARTING = "starting"
    STREAMING = "streaming"
    SERVER_OFFLINE = "server_offline"
    ERROR = "error"


STARTING = LedState.STARTING
STREAMING = LedState.STREAMING
SERVER_OFFLINE = LedState.SERVER_OFFLINE
ERROR = LedState.ERROR


@dataclass(frozen=True)
class BlinkPattern:
    on_time: float
    off_time: float

    @property
    def period(self) -> float:
        return self.on_time + self.off_time


PATTERNS: dict[LedState, BlinkPattern] = {
    LedState.STARTING: BlinkPattern(0.5, 0.5),
    LedState.STREAMING: BlinkPattern(0.9, 0.1),
    LedState.SERVER_OFFLINE: BlinkPattern(0.1, 0.9),
    LedState.ERROR: BlinkPattern(0.1, 0.1),
}


log = get_logger(__name__)


class StatusLED:
    """A gpiozero LED blinking the pattern of the current :class:`LedState`.

    Setting the state it already has does nothing (the daemon may report "streaming" on
    every frame without restarting the rhythm). ``pin=None`` gives a LED that only
    remembers its state, for boards configured without one.
    """

    def __init__(
        self,
        pin: int | str | None,
        *,
        pin_factory: Any = None,
        active_high: bool = True,
        initial: LedState = LedState.STARTING,
        patterns: dict[LedState, BlinkPattern] | None = None,
    ) -> None:
        self.patterns = dict(PATTERNS if patterns is None else patterns)
        missing = [s.name for s in LedState if s not in self.patterns]
        if missing:
            raise ValueError(f"status LED: no blink pattern for state(s) {', '.join(missing)}")
        self._lock = threading.Lock()
        self._led: LED | None = None
        if pin is not None:
            self._led = LED(
                pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
            )
        self._state: LedState | None = None
        self.set(initial)

    @property
    def state(self) -> LedState | None:
        return self._state

    @state.setter
    def state(self, value: LedState) -> None:
        self.set(value)

    def set(self, state: LedState) -> None:
        if not isinstance(state, LedState):
            raise ValueError(
                f"status LED: unknown state {state!r}; use one of {[s.name for s in LedState]}"
            )
        with self._lock:
            if state is self._state:
                return
            self._state = state
            if self._led is not None:
                pattern = self.patterns[state]
                self._led.blink(on_time=pattern.on_time, off_time=pattern.off_time, background=True)
        log.info("led", state=state.name)

    def set_state(self, state: LedState) -> None:
        """Alias of :meth:`set` (the name the device daemon's wrapper calls)."""
        self.set(state)

    def close(self) -> None:
        """Turn the LED off and release the pin (idempotent)."""
        with self._lock:
            if self._led is not None:
                self._led.off()
                self._led.close()
                self._led = None
            self._state = None

    def __enter__(self) -> StatusLED:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PauseButton:
    """A push button that toggles pause/resume and calls ``on_toggle(paused)``.

    Debounced in software (``debounce`` seconds between accepted presses) because a
    pin factory's own bounce handling differs between backends and does not exist in
    MockFactory. A failing callback is logged and swallowed: it runs in gpiozero's thread,
    where an exception would silently kill event handling for the rest of the run.
    ``clock`` (monotonic seconds) is what the debounce window is measured on; a test passes
    a stepped clock to check the window's edge exactly instead of sleeping across it.
    """

    def __init__(
        self,
        pin: int | str,
        on_toggle: Callable[[bool], object],
        *,
        pin_factory: Any = None,
        pull_up: bool = True,
        debounce: float = 0.05,
        paused: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(on_toggle):
            raise TypeError("pause button: on_toggle must be callable")
        if debounce < 0:
            raise ValueError(f"pause button: debounce must be >= 0, got {debounce}")
        self._on_toggle = on_toggle
        self._debounce = debounce
        self._clock = clock
        self._lock = threading.Lock()
        self._last_press = -float("inf")
        self.paused = paused
        self.presses = 0
        self.bounces_ignored = 0
        self._button = Button(pin, pull_up=pull_up, pin_factory=pin_factory)
        self._button.when_pressed = self._pressed

    def _pressed(self) -> None:
        now = self._clock()
        with self._lock:
            if now - self._last_press < self._debounce:
                self.bounces_ignored += 1
                return
            self._last_press = now
            self.presses += 1
            self.paused = not self.paused
            paused = self.paused
        log.info("button", paused=paused)
        try:
            self._on_toggle(paused)
        except Exception as exc:
            log.error("button_callback_failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self._button is not None:
            self._button.when_pressed = None
            self._button.close()
            self._button = None  # type: ignore[assignment]

    def __enter__(self) -> PauseButton:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
