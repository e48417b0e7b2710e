"""``[device] fps_limit``: start frames on a fixed schedule, one period apart.

Why a schedule and not "sleep what is left of the period after the frame": the daemon takes
the *latest* frame, and a frame's age says nothing about when the previous one started. The
old rule (sleep ``period - frame age``) let a frame that sat in the camera's slot during the
sleep go without any wait at all, so a folder camera ran at 3x the limit in bursts. Here every
frame has a slot ``due, due + period, due + 2 period, ...``; a frame that starts a little late
(sleep overshoot, a busy machine) does not shift the later slots, so the rate stays exactly
the limit. A frame that starts a whole period late or more (a stall, a pipeline slower than
the limit) re-anchors the schedule on itself: no burst of catch-up frames after a stall, as a
real camera does not either.

Clock and sleep are injectable so the schedule is tested without the wall clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class FramePacer:
    """Says when the next frame may start; ``fps_limit = 0`` means no limit."""

    def __init__(
        self,
        fps_limit: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (math.isfinite(fps_limit) and fps_limit >= 0):
            raise ValueError(f"fps_limit must be a number >= 0, got {fps_limit!r}")
        self.period = 1.0 / fps_limit if fps_limit > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._due: float | None = None  # start time of the next frame's slot

    @property
    def due(self) -> float | None:
        """When the next frame may start (None: now, nothing started yet or no limit)."""
        return self._due

    def wait(self, max_wait: float) -> bool:
        """Sleep towards the next slot, ``max_wait`` at most; True once a frame may start.

        Bounded so the caller's loop keeps serving the watchdog and signals at low limits
        (``fps_limit = 0.1`` would otherwise block for 10 s).
        """
        if self._due is None:
            return True
        left = self._due - self._clock()
        if left <= 0:
            return True
        self._sleep(min(left, max_wait))
        return self._clock() >= self._due

    def started(self, t: float | None = None) -> None:
        """A frame started at ``t`` (default now): book the next slot one period later."""
        if not self.period:
            return
        now = self._clock() if t is None else t
        nxt = (now if self._due is None else self._due) + self.period
        # Late by a whole period or more (a stall, a slow pipeline): re-anchor on this start
        # rather than letting the missed slots through back to back.
        self._due = nxt if nxt > now else now + self.period
