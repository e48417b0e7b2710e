"""Shared test helpers: a free port, a stepped clock, waiting on a condition, a TFLite head.

Why here: tests used to import helpers from other test modules and each kept its own
``free_port`` and ``_wait`` loop. Fixtures in this one place replace them, so a test file
imports only the code under test.

Waiting: ``wait_until`` polls a condition against a deadline instead of a fixed
``time.sleep`` — it returns as soon as the condition holds (fast on an idle machine) and
only a condition that never holds costs the whole timeout (rare, and then it fails).

Helpers that are not fixtures (heads, tails, peers, processes, the units' sandbox) are in
the ``tests/support`` package.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from support.device_side import cached_head

from benchmarks.harness.ray_head import RAY_ENV
from benchmarks.ports import free_port as _free_port

T = TypeVar("T")

# Before any test module can import Ray (benchmarks/harness/ray_head.py says why).
for _key, _value in RAY_ENV.items():
    os.environ.setdefault(_key, _value)


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


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()`` -> a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., object]:
    return wait_until


@pytest.fixture(scope="session")
def head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The device tests' int8 TFLite head and its head.json (real TFLiteConverter in a
    subprocess, ~8 s), built once a session and shared by every daemon test."""
    return cached_head(tmp_path_factory.getbasetemp())
