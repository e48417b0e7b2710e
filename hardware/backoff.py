"""Exponential backoff: one policy (and one config shape) for every retry on the board.

Why one: a camera reopening its device, the daemon re-creating a camera that gave up, and
the link re-sending HELLO to a server that is gone all wait ``initial``, ``initial*factor``,
… capped at ``maximum``. Written three times, the three drifted (one ignored ``factor``,
one had no cap on the exponent). Here the policy is a frozen value read from one TOML
table shape — ``{initial, maximum, factor, max_attempts}`` — and :class:`RetryTimer` is
the state a polling loop keeps, with an injectable clock so it is tested without sleeping.

It lives in ``hardware`` because that is the lowest package that retries (the camera
sources); ``device`` uses it from there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["BACKOFF_KEYS", "Backoff", "BackoffError", "RetryTimer"]

#: The keys of a backoff table (``[camera.reconnect]``, ``[server.reconnect]``, ``reconnect=``).
BACKOFF_KEYS = ("initial", "maximum", "factor", "max_attempts")


class BackoffError(ValueError):
    """A backoff setting that cannot work; the message names the key."""


@dataclass(frozen=True)
class Backoff:
    """Exponential delays: ``initial``, ``initial*factor``, … capped at ``maximum`` (seconds).

    ``max_attempts`` bounds the attempts after a loss (``None``: retry forever, the right
    default for an unattended board whose USB camera may be replugged). Subclasses may set
    ``error`` so a bad setting raises their package's error type.
    """

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0
    max_attempts: int | None = None

    error: ClassVar[type[Exception]] = BackoffError

    def __post_init__(self) -> None:
        for key in ("initial", "maximum", "factor"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.error(f"reconnect backoff {key} must be a number, got {value!r}")
        if not (self.initial > 0 and math.isfinite(self.initial)):
            raise self.error(f"reconnect backoff initial delay must be > 0, got {self.initial}")
        if not self.maximum >= self.initial or not math.isfinite(self.maximum):
            raise self.error(
                f"reconnect backoff maximum ({self.maximum}) is below initial ({self.initial})"
            )
        if not (self.factor >= 1 and math.isfinite(self.factor)):
            raise self.error(f"reconnect backoff factor must be >= 1, got {self.factor}")
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or self.max_attempts < 0
        ):
            raise self.error(f"reconnect max_attempts must be >= 0, got {self.max_attempts}")

    @classmethod
    def from_mapping(cls, value: Any, where: str) -> Backoff:
        """A policy from a table (TOML, kwargs); unknown keys are errors naming ``where``."""
        if isinstance(value, Backoff):  # already validated (any subclass)
            return value
        if not isinstance(value, Mapping):
            raise cls.error(f"{where}: reconnect must be a table, got {value!r}")
        for key in value:
            if key not in BACKOFF_KEYS:
                raise cls.error(
                    f"{where}: unknown reconnect key {key!r} (allowed: {', '.join(BACKOFF_KEYS)})"
                )
        return cls(**dict(value))

    def delay(self, attempt: int) -> float:
        """The wait before attempt ``attempt`` (0-based): ``initial * factor**attempt``, capped.

        The exponent is bounded first, so a link down for days never overflows a float.
        """
        if attempt <= 0 or self.factor == 1:
            return min(self.initial, self.maximum)
        steps = math.log(self.maximum / self.initial) / math.log(self.factor)
        return min(self.maximum, self.initial * self.factor ** min(attempt, math.ceil(steps)))

    def delays(self) -> Iterator[float]:
        """The successive waits before each attempt (finite if ``max_attempts`` is set)."""
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield self.delay(attempt)
            attempt += 1


class RetryTimer:
    """The state of one retrying loop: consecutive failures and when to try next.

    For loops that poll (the daemon's camera supervisor) rather than sleep: ``failed()``
    schedules the next attempt one backoff delay ahead, ``due()`` says whether it is time,
    ``succeeded()`` starts over at ``initial``. ``clock`` is injectable for tests.
    """

    def __init__(self, policy: Backoff, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self.failures = 0
        self.next_at = -math.inf

    @property
    def next_delay(self) -> float:
        """The wait the next failure will schedule."""
        return self.policy.delay(self.failures)

    def failed(self, now: float | None = None) -> float:
        """Count a failure and schedule the next attempt; returns the delay scheduled."""
        delay = self.next_delay
        self.failures += 1
        self.next_at = (self.clock() if now is None else now) + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.next_at = -math.inf

    def remaining(self, now: float | None = None) -> float:
        """Seconds until the next attempt is due (0 if it is due now)."""
        return max(0.0, self.next_at - (self.clock() if now is None else now))

    def due(self, now: float | None = None) -> bool:
        return self.remaining(now) <= 0.0
