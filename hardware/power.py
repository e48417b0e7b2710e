"""Power sampling thread, ring buffer, and energy per time window.

Why a thread with its own ring buffer: the daemon wants "how many joules did this inference
cost", i.e. the integral of power over an arbitrary [t0, t1] it only knows after the fact.
So a sampler polls the power monitor at a steady rate on the monotonic clock, keeps the last
``capacity`` samples, and answers :meth:`PowerSampler.energy_j` by trapezoid integration with
linear interpolation at the window edges.

Readers are anything with ``read() -> PowerSample``: :class:`hardware.ina226.INA226`,
:class:`hardware.hwmon.HwmonINA2xx`, or the simulator-backed INA226 from
:func:`hardware.monitor.open_power_monitor` ``("sim")``. How the sampler paces itself:

- readers with ``poll()`` (INA226): conversion-ready polling, one mask/enable transfer per
  miss, data registers only for new conversions;
- readers with an ``alert_waiter`` (INA226 with ``alert_pin``): woken by the ALERT GPIO;
- anything else: ``read()`` on a fixed tick.

Daemon use::

    reader = open_power_monitor(cfg.kind, **cfg.params)      # None for "none"
    sampler = PowerSampler(reader, rate_hz=500, capacity=65536).start()
    t0 = time.monotonic(); run_inference(); t1 = time.monotonic()
    sampler.wait_until(t1, timeout=0.05)                     # samples trail by ~1 ADC cycle
    joules = sampler.energy_j(t0, t1)
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardware.powersample import PowerReader, PowerSample

__all__ = [
    "GapEvent",
    "PowerSampler",
    "SamplerStats",
    "trapezoid_energy",
]

FLAG_OVERFLOW = 1


@dataclass(frozen=True)
class GapEvent:
    """A tick where no sample could be taken (error after the reader's retries)."""

    t: float
    error: str


@dataclass(frozen=True)
class SamplerStats:
    samples: int  # stored samples since start
    gaps: int  # ticks lost to read errors
    errors: int  # transient bus errors seen by the reader (retried ones included)
    stale: int  # reads with no new conversion (sampling faster than the chip converts)
    overruns: int  # ticks skipped because the loop fell behind
    overwritten: int  # samples dropped from the ring buffer (capacity)
    overflow: int  # samples the chip flagged with a math overflow
    elapsed_s: float
    achieved_rate_hz: float
    last_error: str | None


def trapezoid_energy(t: np.ndarray, p: np.ndarray, t0: float, t1: float) -> float:
    """∫ p dt over [t0, t1] ∩ [t[0], t[-1]] by trapezoids, interpolating p at the edges.

    ``t`` must be sorted ascending. Outside the sampled span nothing is extrapolated: the
    window is clipped (callers check coverage when that matters).
    """
    n = len(t)
    if n < 2 or not t1 > t0:
        return 0.0
    a = max(t0, float(t[0]))
    b = min(t1, float(t[-1]))
    if not b > a:
        return 0.0
    i = int(np.searchsorted(t, a, side="right"))
    j = int(np.searchsorted(t, b, side="left"))
    pa = float(np.interp(a, t, p))
    pb = float(np.interp(b, t, p))
    xs = np.concatenate(([a], t[i:j], [b]))
    ys = np.concatenate(([pa], p[i:j], [pb]))
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1])) * 0.5)


_COLUMNS = ("t", "timestamp", "bus_v", "shunt_v", "current_a", "power_w")


class PowerSampler:
    """Polls ``reader.read()`` at ``rate_hz`` in a daemon thread into a bounded ring buffer.

    Samples are placed at ``PowerSample.t_mid`` (read time minus the ADC window's age), kept
    strictly increasing. The time column is stored twice (at i and i+capacity) so the logical
    window is one sorted contiguous slice to search; the other columns are stored once and
    copied out in at most two pieces (a query copies its window anyway). Mirroring every
    column kept 6.4 MB resident for the default 65536 samples, 3.7 MB now.
    """

    def __init__(
        self,
        reader: PowerReader,
        rate_hz: float = 500.0,
        capacity: int = 65536,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        adapt_reader: bool = True,
        name: str = "power-sampler",
    ) -> None:
        if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        if not (isinstance(capacity, int) and capacity >= 2):
            raise ValueError(f"capacity must be an integer ≥ 2, got {capacity!r}")
        self.reader = reader
        self.rate_hz = float(rate_hz)
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep  # injectable with the clock: virtual-time benchmarks and tests
        self._name = name
        self._lock = threading.Lock()
        self._buf = {
            c: np.zeros(2 * capacity if c == "t" else capacity, dtype=np.float64) for c in _COLUMNS
        }
        self._flags = np.zeros(capacity, dtype=np.uint8)
        self._count = 0
        self._gaps = 0
        self._stale = 0
        self._overruns = 0
        self._overflow = 0
        self._last_error: str | None = None
        self._gap_events: deque[tuple[int, GapEvent]] = deque(maxlen=4096)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._new_data = threading.Condition(self._lock)
        if adapt_reader and hasattr(reader, "adapt_to_rate"):
            reader.adapt_to_rate(self.rate_hz)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> PowerSampler:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("sampler already running")
        self._stop.clear()
        self._started_at = self._clock()
        self._stopped_at = None
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._stopped_at = self._clock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> PowerSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        """Tick at ``rate_hz``; with a ``poll()``-capable reader, sample on conversion-ready.

        A poll that finds no new conversion is retried after a quarter period instead of a
        whole one, which locks the loop onto the chip's conversion phase. Sleeps are shortened
        by the measured wake-up overshoot (EWMA) so ticks land on time without spinning.
        """
        period = 1.0 / self.rate_hz
        clock = self._clock
        poll = getattr(self.reader, "poll", None)
        read = self.reader.read
        wait_alert = getattr(self.reader, "alert_waiter", None)
        if wait_alert is not None:
            self._run_on_alert(wait_alert, poll or read)
            return
        next_t = clock()
        last_mid = -math.inf
        slack = 0.0
        while not self._stop.is_set():
            now = clock()
            wait = next_t - now - slack
            if wait > 0:
                self._sleep(wait)
                # typical wake-up lateness; preemption outliers (ms) are clipped out
                over = min(max(0.0, clock() - (now + wait)), 3e-4)
                slack = min(0.9 * slack + 0.1 * over, period / 4)
            try:
                s = poll() if poll is not None else read()
            except Exception as exc:  # the loop must survive anything a reader throws
                msg = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self._gaps += 1
                    self._last_error = msg
                    self._gap_events.append((self._gaps, GapEvent(clock(), msg)))
            else:
                if s is None or not s.fresh:
                    self._stale += 1
                    if s is None:  # conversion imminent: look again soon, off the grid
                        next_t = clock() + slack + period / 4
                        continue
                else:
                    mid = s.t_mid
                    if mid <= last_mid:  # keep the time axis strictly increasing
                        mid = last_mid + 1e-7
                    last_mid = mid
                    self._store(mid, s)
            next_t += period
            behind = clock() - next_t
            if behind > period:
                skipped = int(behind / period)
                self._overruns += skipped
                next_t += skipped * period

    def _run_on_alert(
        self, wait_alert: Callable[[float], bool], poll: Callable[[], PowerSample | None]
    ) -> None:
        """Sample when the chip's ALERT pin signals conversion-ready: no I2C polling at all.

        The chip's cycle was fitted to ``rate_hz`` (``adapt_to_rate``), so the pin paces the
        loop. A wait that times out (missed edge) polls anyway.
        """
        timeout = max(0.05, 4.0 / self.rate_hz)
        last_mid = -math.inf
        while not self._stop.is_set():
            wait_alert(timeout)
            try:
                s = poll()
            except Exception as exc:  # the loop must survive anything a reader throws
                msg = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self._gaps += 1
                    self._last_error = msg
                    self._gap_events.append((self._gaps, GapEvent(self._clock(), msg)))
                self._stop.wait(1.0 / self.rate_hz)
                continue
            if s is None or not s.fresh:
                self._stale += 1
                continue
            mid = s.t_mid
            if mid <= last_mid:
                mid = last_mid + 1e-7
            last_mid = mid
            self._store(mid, s)

    def _store(self, mid: float, s: PowerSample) -> None:
        cap = self.capacity
        with self._lock:
            i = self._count % cap
            for col, v in (
                ("t", mid),
                ("timestamp", s.timestamp),
                ("bus_v", s.bus_voltage_v),
                ("shunt_v", s.shunt_voltage_v),
                ("current_a", s.current_a),
                ("power_w", s.power_w),
            ):
                self._buf[col][i] = v
            self._buf["t"][i + cap] = mid
            self._flags[i] = FLAG_OVERFLOW if s.overflow else 0
            if s.overflow:
                self._overflow += 1
            self._count += 1
            self._new_data.notify_all()

    # -- queries -------------------------------------------------------------------

    def _window(self, first: int, k: int) -> dict[str, np.ndarray]:
        """Copies of ``k`` samples from physical index ``first`` on (wrapping); lock held."""
        cap = self.capacity
        first %= cap
        end = first + k
        out = {}
        for c, arr in (*self._buf.items(), ("flags", self._flags)):
            if end <= cap:
                out[c] = arr[first:end].copy()
            else:
                out[c] = np.concatenate((arr[first:cap], arr[: end - cap]))
        return out

    def _span(self) -> tuple[int, int]:
        """Start index and length of the logical window inside the mirrored buffer."""
        n = min(self._count, self.capacity)
        return (self._count - n) % self.capacity, n

    def _slice(self, t0: float | None, t1: float | None, pad: int) -> dict[str, np.ndarray]:
        with self._lock:
            start, n = self._span()
            t = self._buf["t"][start : start + n]
            lo = 0 if t0 is None else int(np.searchsorted(t, t0, side="left"))
            hi = n if t1 is None else int(np.searchsorted(t, t1, side="right"))
            lo, hi = max(0, lo - pad), min(n, hi + pad)
            return self._window(start + lo, max(0, hi - lo))

    def arrays(self, t0: float | None = None, t1: float | None = None) -> dict[str, np.ndarray]:
        """Columns (t, timestamp, bus_v, shunt_v, current_a, power_w, flags) with t in [t0, t1]."""
        return self._slice(t0, t1, pad=0)

    def samples(self, t0: float | None = None, t1: float | None = None) -> list[PowerSample]:
        a = self.arrays(t0, t1)
        return [
            PowerSample(
                bus_voltage_v=float(a["bus_v"][k]),
                shunt_voltage_v=float(a["shunt_v"][k]),
                current_a=float(a["current_a"][k]),
                power_w=float(a["power_w"][k]),
                timestamp=float(a["timestamp"][k]),
                overflow=bool(a["flags"][k] & FLAG_OVERFLOW),
                age_s=float(a["timestamp"][k] - a["t"][k]),
            )
            for k in range(len(a["t"]))
        ]

    def energy_j(self, t0: float, t1: float) -> float:
        """Energy in joules over [t0, t1] (monotonic seconds), clipped to the sampled span.

        Power is taken as linear between samples (also across a gap left by failed reads);
        the newest samples trail real time by about one ADC cycle, so for a window that just
        ended call :meth:`wait_until` (t1) first, or check :meth:`coverage`.
        """
        a = self._slice(t0, t1, pad=1)
        return trapezoid_energy(a["t"], a["power_w"], t0, t1)

    def coverage(self, t0: float, t1: float) -> float:
        """Fraction of [t0, t1] inside the sampled span (what energy_j really integrated)."""
        if not t1 > t0:
            return 0.0
        with self._lock:
            start, n = self._span()
            if n < 2:
                return 0.0
            first = float(self._buf["t"][start])
            last = float(self._buf["t"][start + n - 1])
        return max(0.0, min(t1, last) - max(t0, first)) / (t1 - t0)

    def mean_power_w(self, t0: float, t1: float) -> float:
        """Mean power over the covered part of [t0, t1]; NaN when nothing covers it."""
        a = self._slice(t0, t1, pad=1)
        if len(a["t"]) < 2:
            return math.nan
        lo, hi = max(t0, float(a["t"][0])), min(t1, float(a["t"][-1]))
        if not hi > lo:
            return math.nan
        return trapezoid_energy(a["t"], a["power_w"], lo, hi) / (hi - lo)

    def wait_until(self, t: float, timeout: float) -> bool:
        """Block until a sample placed at or after ``t`` exists (so energy_j(…, t) is whole)."""
        deadline = time.monotonic() + timeout
        with self._new_data:
            while True:
                start, n = self._span()
                if n and self._buf["t"][start + n - 1] >= t:
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or not self.running:
                    return False
                self._new_data.wait(min(left, 0.05))

    def latest(self) -> PowerSample | None:
        """The most recent sample (cheap: does not materialise the whole buffer)."""
        with self._lock:
            if self._count == 0:
                return None
            i = (self._count - 1) % self.capacity
            b = self._buf
            return PowerSample(
                bus_voltage_v=float(b["bus_v"][i]),
                shunt_voltage_v=float(b["shunt_v"][i]),
                current_a=float(b["current_a"][i]),
                power_w=float(b["power_w"][i]),
                timestamp=float(b["timestamp"][i]),
                overflow=bool(self._flags[i] & FLAG_OVERFLOW),
                age_s=float(b["timestamp"][i] - b["t"][i]),
            )

    def since(self, seq: int) -> tuple[int, dict[str, np.ndarray], int]:
        """Samples stored after sequence number ``seq``: (new seq, columns, number lost).

        Used by the power log to drain the buffer incrementally; ``lost`` counts samples that
        were overwritten before they could be drained.
        """
        with self._lock:
            count = self._count
            oldest = max(0, count - self.capacity)
            lost = max(0, oldest - seq)
            first = max(seq, oldest)
            k = count - first
            out = self._window(first, k)
        return count, out, lost

    def gap_events_since(self, seq: int) -> tuple[int, list[GapEvent]]:
        with self._lock:
            events = [(n, e) for n, e in self._gap_events if n > seq]
            return self._gaps, [e for _, e in events]

    def stats(self) -> SamplerStats:
        with self._lock:
            count, gaps, last = self._count, self._gaps, self._last_error
        start = self._started_at
        end = self._stopped_at if self._stopped_at is not None else self._clock()
        elapsed = 0.0 if start is None else max(0.0, end - start)
        return SamplerStats(
            samples=count,
            gaps=gaps,
            errors=int(getattr(self.reader, "transient_errors", 0)),
            stale=self._stale,
            overruns=self._overruns,
            overwritten=max(0, count - self.capacity),
            overflow=self._overflow,
            elapsed_s=elapsed,
            achieved_rate_hz=count / elapsed if elapsed > 0 else 0.0,
            last_error=last,
        )
