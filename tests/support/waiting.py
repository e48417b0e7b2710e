"""Waiting on a condition and a stepped clock: what tests use instead of ``time.sleep``.

Why a module and not only conftest fixtures: helpers in ``tests/support`` and module-level
helpers in test files need them too, and a test file must not import ``conftest`` (or
another test module). ``tests/conftest.py`` exposes both as fixtures.

``wait_until`` polls a condition against a deadline instead of a fixed sleep: it returns
as soon as the condition holds (fast on an idle machine, merely later on a loaded one), and
only a condition that never holds costs the whole timeout (and then it fails).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.005, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Fails the test (AssertionError naming ``what``) if it has not held after ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class FakeClock:
    """A monotonic clock that moves only when a test moves it; thread-safe.

    Code under test takes ``clock: Callable[[], float] = time.monotonic``; passing this
    instead makes deadlines, backoffs and sliding windows exact and free of wall time.
    ``calls`` counts reads, so a test can wait until a polling thread has seen a value
    (``wait_reads``) before asserting that nothing happened at that time.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._cond = threading.Condition()
        self.calls = 0

    def __call__(self) -> float:
        with self._cond:
            self.calls += 1
            self._cond.notify_all()
            return self._now

    def advance(self, seconds: float) -> float:
        with self._cond:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._cond:
            if now < self._now:
                raise ValueError(f"a monotonic clock cannot go back ({now} < {self._now})")
            self._now = now

    def wait_reads(self, n: int, timeout: float = 10.0) -> None:
        """Block until the clock has been read ``n`` more times (by any thread)."""
        with self._cond:
            target = self.calls + n
            if not self._cond.wait_for(lambda: self.calls >= target, timeout):
                raise AssertionError(f"the clock was not read {n} more times in {timeout} s")
