"""The last N values of a per-frame figure, for the run summary's medians and percentiles.

Why not ``deque(maxlen=N)``: a deque of floats holds a 24-byte float object plus an 8-byte
slot per value; eight of them (head, encode, preprocess, overhead ×2, energies, latencies)
kept 1.2 MB alive in a daemon that runs for months. A numpy ring holds 8 bytes a value.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class FloatHistory:
    """A bounded ring of floats; iterates oldest first, like the deque it replaces."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self._buf = np.zeros(maxlen, dtype=np.float64)
        self._n = 0  # values ever appended

    @property
    def maxlen(self) -> int:
        return len(self._buf)

    def append(self, x: float) -> None:
        self._buf[self._n % len(self._buf)] = x
        self._n += 1

    def values(self) -> np.ndarray:
        """A copy, oldest first."""
        cap = len(self._buf)
        if self._n <= cap:
            return self._buf[: self._n].copy()
        i = self._n % cap
        return np.concatenate((self._buf[i:], self._buf[:i]))

    def __len__(self) -> int:
        return min(self._n, len(self._buf))

    def __iter__(self) -> Iterator[float]:
        return iter(self.values().tolist())
