"""Status LED patterns and the pause button, on gpiozero's MockFactory.

The LED code path is gpiozero's real one (LED.blink's background thread toggling a pin);
MockPin records every transition with its time, which is what the patterns are checked
against. Tests wait until the pin has gone through enough phases (``wait_until``), not for a
fixed time, so a starved blink thread on a loaded machine delays them instead of failing
them. The pause button's debounce window runs on a stepped clock (``fake_clock``).
"""

from __future__ import annotations

import itertools
import statistics

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from hardware.status import PATTERNS, BlinkPattern, LedState, PauseButton, StatusLED


@pytest.fixture
def factory():
    previous = Device.pin_factory
    Device.pin_factory = MockFactory()
    try:
        yield Device.pin_factory
    finally:
        Device.pin_factory.reset()
        Device.pin_factory = previous


def _durations(pin) -> tuple[list[float], list[float]]:
    """Measured on- and off-durations from a MockPin's history (complete phases only).

    ``states[i].timestamp`` is the time since the previous transition, i.e. how long the
    pin held ``states[i-1].state``.
    """
    on, off = [], []
    history = pin.states
    for prev, cur in itertools.pairwise(history[1:]):
        (on if prev.state else off).append(cur.timestamp)
    return on, off


def _close(measured: list[float], expected: float) -> bool:
    return abs(statistics.median(measured) - expected) <= 0.3 * expected + 0.03


def _phases(pin, n: int) -> bool:
    """True once ``pin`` has completed at least ``n`` on- and ``n`` off-phases."""
    on, off = _durations(pin)
    return len(on) >= n and len(off) >= n


def test_each_state_blinks_its_own_pattern(factory, wait_until) -> None:
    pins = {state: 5 + i for i, state in enumerate(LedState)}
    leds = {state: StatusLED(pin, initial=state) for state, pin in pins.items()}
    try:
        wait_until(
            lambda: all(_phases(factory.pin(n), 2) for n in pins.values()),
            10,
            what="two complete on- and off-phases on every LED",
        )
    finally:
        for led in leds.values():
            led.close()
    for state, pin_no in pins.items():
        pattern = PATTERNS[state]
        on, off = _durations(factory.pin(pin_no))
        assert len(on) >= 1 and len(off) >= 1, (state, factory.pin(pin_no).states)
        assert _close(on, pattern.on_time), (state, on)
        assert _close(off, pattern.off_time), (state, off)


def test_patterns_are_distinguishable() -> None:
    timings = {(p.on_time, p.off_time) for p in PATTERNS.values()}
    assert len(timings) == len(LedState)
    duty = sorted(p.on_time / p.period for p in PATTERNS.values())
    assert duty[-1] > 0.8 and duty[0] < 0.2  # streaming ≈ on, offline ≈ off, at a glance


def test_changing_state_changes_the_rhythm(factory, wait_until) -> None:
    led = StatusLED(17)
    pin = factory.pin(17)
    try:
        assert led.state is LedState.STARTING
        led.set_state(LedState.ERROR)
        assert led.state is LedState.ERROR
        pin.clear_states()
        wait_until(lambda: _phases(pin, 3), 10, what="three on- and off-phases")
        on, off = _durations(pin)
        assert _close(on, 0.1) and _close(off, 0.1)
    finally:
        led.close()


def test_repeating_the_same_state_does_not_restart_the_blink(factory, wait_until) -> None:
    led = StatusLED(17, initial=LedState.STREAMING)
    pin = factory.pin(17)

    def report_then_look() -> bool:
        led.state = LedState.STREAMING  # the daemon reports on every frame
        return any(not s.state for s in pin.states[2:])

    try:
        # Restarting blink() each time would hold the LED on forever (0.9 s on-phase), so
        # the off-phase would never come while the state is being reported.
        wait_until(report_then_look, 10, what="an off-phase while STREAMING is reported")
    finally:
        led.close()


def test_close_turns_off_and_releases_the_pin(factory, wait_until) -> None:
    led = StatusLED(17)
    wait_until(lambda: factory.pin(17).state is True, 10, what="the blink's first on-phase")
    led.close()
    assert factory.pin(17).state is False
    led.close()  # idempotent
    again = StatusLED(17)  # the pin is free again (GPIOPinInUse otherwise)
    again.close()


def test_active_low_led(factory, wait_until) -> None:
    # A minute-long on-phase: the pin can only go low within the wait by being turned on
    # (active low), not by reaching an off-phase of a LED wired the wrong way round.
    patterns = {state: BlinkPattern(60.0, 60.0) for state in LedState}
    led = StatusLED(17, active_high=False, initial=LedState.STREAMING, patterns=patterns)
    try:
        wait_until(lambda: factory.pin(17).state is False, 10, what="the pin low (LED on)")
    finally:
        led.close()
    assert factory.pin(17).state is True


def test_explicit_pin_factory_is_used(wait_until) -> None:
    own = MockFactory()
    led = StatusLED(22, pin_factory=own, initial=LedState.STREAMING)
    try:
        wait_until(lambda: own.pin(22).state is True, 10, what="the LED on in the own factory")
    finally:
        led.close()


def test_no_pin_means_no_gpio_but_state_is_tracked() -> None:
    led = StatusLED(None)
    led.set(LedState.SERVER_OFFLINE)
    assert led.state is LedState.SERVER_OFFLINE
    led.close()


def test_unknown_state_is_rejected(factory) -> None:
    led = StatusLED(17)
    try:
        with pytest.raises(ValueError, match="unknown state 'blue'"):
            led.set("blue")  # type: ignore[arg-type]
    finally:
        led.close()


def test_missing_pattern_is_rejected(factory) -> None:
    with pytest.raises(ValueError, match="ERROR"):
        StatusLED(17, patterns={s: p for s, p in PATTERNS.items() if s is not LedState.ERROR})


def _press(pin) -> None:
    pin.drive_low()  # pull-up wiring: pressed connects the pin to ground
    pin.drive_high()


def test_button_toggles_pause_and_resume(factory) -> None:
    calls: list[bool] = []
    button = PauseButton(27, calls.append, debounce=0.0)
    pin = factory.pin(27)
    try:
        _press(pin)
        assert calls == [True] and button.paused
        _press(pin)
        assert calls == [True, False] and not button.paused
        pin.drive_low()  # holding it down is one press, releasing is not another
        assert calls == [True, False, True]
        pin.drive_high()
        assert calls == [True, False, True]
    finally:
        button.close()


def test_button_bounce_is_ignored(factory, fake_clock) -> None:
    calls: list[bool] = []
    button = PauseButton(27, calls.append, debounce=0.2, clock=fake_clock)
    pin = factory.pin(27)
    try:
        first = fake_clock()
        for _ in range(4):  # contact bounce: a burst of edges within a few ms
            _press(pin)
            fake_clock.advance(0.001)
        assert calls == [True]
        assert button.bounces_ignored == 3
        fake_clock.set(first + 0.2 - 1e-6)  # still inside the window
        _press(pin)
        assert calls == [True] and button.bounces_ignored == 4
        fake_clock.set(first + 0.2)  # the window has passed: a new press
        _press(pin)
        assert calls == [True, False]
    finally:
        button.close()


def test_failing_callback_does_not_break_the_button(factory) -> None:
    seen: list[bool] = []

    def flaky(paused: bool) -> None:
        seen.append(paused)
        raise RuntimeError("daemon hiccup")

    button = PauseButton(27, flaky, debounce=0.0)
    pin = factory.pin(27)
    try:
        _press(pin)
        _press(pin)
        assert seen == [True, False]
        assert button.presses == 2
    finally:
        button.close()


def test_button_close_releases_the_pin(factory) -> None:
    button = PauseButton(27, lambda paused: None)
    button.close()
    button.close()
    PauseButton(27, lambda paused: None).close()


def test_button_rejects_bad_arguments(factory) -> None:
    with pytest.raises(TypeError, match="callable"):
        PauseButton(27, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="debounce"):
        PauseButton(27, print, debounce=-1)
