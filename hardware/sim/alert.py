"""The simulated INA226's ALERT output on a gpiozero mock pin, in real time.

Why a thread: the register model is evaluated lazily (on bus access), but the ALERT pin must
change when a conversion completes even if nobody talks to the chip — that is the point of
waiting on the pin instead of polling I2C. This driver sleeps until the chip's next cycle
end, brings the chip up to date, and the chip reports pin changes through
``SimulatedINA226.on_alert_change``, which drives a ``MockFactory`` pin; the real gpiozero
``DigitalInputDevice`` in :class:`hardware.ina226.INA226` sees the edge as on a board.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from hardware.sim.ina226_chip import SimulatedINA226

__all__ = ["AlertPinDriver"]


class AlertPinDriver:
    """Keeps ``pin`` (a gpiozero ``MockPin``) at the chip's ALERT level. Start/stop it."""

    def __init__(self, chip: SimulatedINA226, pin: Any) -> None:
        self.chip = chip
        self.pin = pin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        pin.drive_high()  # open drain with a pull-up: idle high
        chip.on_alert_change = self._drive

    def _drive(self, high: bool) -> None:
        if high:
            self.pin.drive_high()
        else:
            self.pin.drive_low()

    def _run(self) -> None:
        clock = self.chip.clock
        while not self._stop.is_set():
            due = self.chip.next_conversion_at()
            if due is None:
                self._stop.wait(0.01)
                continue
            wait = due - clock()
            if wait > 0:
                time.sleep(wait)
            self.chip.poke()

    def start(self) -> AlertPinDriver:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="ina226-alert", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.chip.on_alert_change = None

    def __enter__(self) -> AlertPinDriver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
