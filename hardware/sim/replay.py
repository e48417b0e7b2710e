"""A clock for the simulated INA226 chain that trails real time and catches up in batches.

Why: a :class:`~hardware.sim.SimulatedINA226` answers every register read from the load's
exact history, so a conversion read a few milliseconds after it completed holds exactly what
it would have held on time. A sampler whose chip, driver and loop run on this clock executes
its usual code (the real INA226 driver, conversion-ready polling, one sample per conversion)
but sleeps for real only once per ``batch_s``: at 1 kHz, 40 wake-ups a second instead of
1000. In the device daemon each of those wake-ups was a GIL hand-off in the middle of the
main thread's preprocess and head (issue #18 item 10: the 1 kHz sampler thread made the
daemon's preprocess 60 % slower than a bare loop's while a camera thread was decoding).

Real hardware cannot do this (its registers hold only the latest conversion), so this is
only ever used with the simulator; samples then trail real time by at most
``lag_s + batch_s``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["ReplayClock"]


class ReplayClock:
    """Callable like ``time.monotonic``, but ``lag_s`` to ``lag_s + batch_s`` behind it.

    ``sleep(dt)`` advances the virtual time by ``dt`` at once; only when that would pass
    ``real() - lag_s`` does it sleep for real, and then long enough for a whole batch.
    """

    def __init__(
        self,
        lag_s: float = 0.005,
        batch_s: float = 0.025,
        *,
        real: Callable[[], float] = time.monotonic,
        real_sleep: Callable[[float], None] = time.sleep,
        quiet: Callable[[float], object] | None = None,
        max_hold_s: float = 0.02,
    ) -> None:
        for name, v in (("lag_s", lag_s), ("batch_s", batch_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        self.lag_s = float(lag_s)
        self.batch_s = float(batch_s)
        self._real = real
        self._real_sleep = real_sleep
        self.t = real() - self.lag_s
        self.wakeups = 0  # real sleeps taken (for tests and benchmarks)
        # ``quiet(timeout)`` blocks until the board is idle (the daemon: no head or encode
        # running), so a batch runs in the gap after a frame instead of beside its head;
        # ``max_hold_s`` bounds the wait, so a board that is never idle is still sampled.
        self._quiet = quiet
        self.max_hold_s = float(max_hold_s)

    def __call__(self) -> float:
        return self.t

    def resync(self) -> None:
        """Jump to ``real() - lag_s`` (never back): skip a stretch nobody sampled, such as
        the daemon's start-up between building the chip and starting the sampler."""
        self.t = max(self.t, self._real() - self.lag_s)

    def sleep(self, dt: float) -> None:
        if dt > 0:
            self.t += dt
        ahead = self.t - (self._real() - self.lag_s)
        if ahead > 0:
            self.wakeups += 1
            self._real_sleep(ahead + self.batch_s)
            if self._quiet is not None:
                self._quiet(self.max_hold_s)
