"""A board's electrical load over time, exact enough to be the ground truth for energy.

Why continuous time: the simulated INA226 integrates the shunt and bus voltages over its
real conversion windows, and the benchmark compares ``PowerSampler.energy_j`` with the true
energy over arbitrary windows. Both need ∫I dt and ∫V·I dt over any interval, exactly.

Model: the load current is a piecewise-constant *level* (idle or busy, switched by the daemon
with :meth:`SimulatedLoad.set_busy` / :meth:`SimulatedLoad.busy`, or scripted in advance) plus
white noise that is constant on a fixed grid of ``noise_cell_s`` cells (a counter-based,
seeded generator, so any past cell can be regenerated). The supply has a source resistance,
so the bus voltage droops with current: V(t) = supply_v − source_ohms·I(t), and the power the
board draws is V·I. Levels are given in watts and converted to the current that draws exactly
that power through the droop.

With a ``radio`` (BottleNet Table 3 link type, :mod:`hardware.sim.radio`), :meth:`transmit`
adds the radio's transmit power on top of the idle/busy level for the frame's air time
(bytes·8/throughput; back-to-back frames queue behind each other), as a modem on the same
rail would show up on a real INA226. The end of a transmission lies in the future when it
starts, so it is recorded lazily: before the next level change or integral that reaches it.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np

from hardware.sim.radio import RadioModel, radio_model

__all__ = ["SimulatedLoad"]

_CHUNK = 4096  # noise cells per generated chunk
# Chunks kept (LRU). The chip only integrates the window that just ended, which spans at most
# two chunks (0.4 s each at the default cell); 64 kept 6 MB alive in the daemon's process.
# Long ground-truth queries regenerate chunks (about 0.1 ms each), exactly.
_CACHED_CHUNKS = 3
_CHUNK_OFFSET = 1 << 40  # keep seed words non-negative for cells before the origin


class SimulatedLoad:
    """Idle/busy power levels + noise on a supply with droop; exact integrals for ground truth."""

    def __init__(
        self,
        idle_w: float = 1.5,
        busy_w: float = 3.5,
        noise_w: float = 0.1,
        supply_v: float = 5.05,
        source_ohms: float = 0.05,
        noise_cell_s: float = 100e-6,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        max_history: int = 200_000,
        radio: str | RadioModel | None = None,
    ) -> None:
        for name, v in (("idle_w", idle_w), ("busy_w", busy_w), ("supply_v", supply_v)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if not (math.isfinite(noise_w) and noise_w >= 0):
            raise ValueError(f"noise_w must be ≥ 0, got {noise_w!r}")
        if not (math.isfinite(source_ohms) and source_ohms >= 0):
            raise ValueError(f"source_ohms must be ≥ 0, got {source_ohms!r}")
        if not (math.isfinite(noise_cell_s) and noise_cell_s > 0):
            raise ValueError(f"noise_cell_s must be > 0, got {noise_cell_s!r}")
        self.idle_w = float(idle_w)
        self.busy_w = float(busy_w)
        self.supply_v = float(supply_v)
        self.source_ohms = float(source_ohms)
        self.noise_cell_s = float(noise_cell_s)
        self.seed = int(seed)
        self.clock = clock
        # level changes kept; a daemon toggling busy per frame for days must not grow without
        # bound, so the oldest half is dropped beyond this (queries that old lose accuracy)
        self.max_history = max(16, int(max_history))
        self.origin = clock()
        # noise is specified in watts; as current it is σ_I = noise_w / V
        self.noise_a = float(noise_w) / supply_v
        self._lock = threading.RLock()
        # array('d'), not lists: 8 bytes per entry instead of a 32-byte float object + pointer
        # (a daemon toggling busy 400 times a second filled 26 MB of lists in 8 minutes)
        self._times = array("d", [self.origin])
        self._levels = array("d", [self.current_for(self.idle_w)])
        self._cum1 = array("d", [0.0])  # ∫L dt from origin to _times[j]
        self._cum2 = array("d", [0.0])  # ∫L² dt
        self._chunks: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._busy = False
        self._script_calls = 0
        self.radio = radio_model(radio) if isinstance(radio, str) else radio
        self._base_w = self.idle_w  # the idle/busy (or scripted) level, radio excluded
        self._radio_until: float | None = None  # end of the current transmission
        self.radio_energy_j = 0.0  # transmit energy scheduled so far (for tests/benchmarks)

    # -- levels --------------------------------------------------------------------

    def current_for(self, watts: float) -> float:
        """Current that draws ``watts`` at the load through the source resistance."""
        v, r = self.supply_v, self.source_ohms
        if r == 0:
            return watts / v
        disc = v * v - 4 * r * watts
        if disc < 0:
            raise ValueError(f"{watts} W is more than this supply can deliver ({v * v / 4 / r} W)")
        return (v - math.sqrt(disc)) / (2 * r)

    def set_power(self, watts: float, t: float | None = None) -> None:
        """Switch the mean power level at time ``t`` (default: now). Times must not go back.

        Negative watts model reverse current (e.g. a battery being charged through the shunt).
        While the radio transmits, its power is added on top.
        """
        with self._lock:
            t = self.clock() if t is None else float(t)
            self._settle_radio(t)
            self._base_w = float(watts)
            radio_w = self.radio.power_w if self._radio_until is not None else 0.0
            self._set_level(self._base_w + radio_w, t)

    def set_radio(self, radio: str | RadioModel | None) -> None:
        """Another link type from now on (the operator's SIGHUP after the link changed);
        a transmission already on the air keeps the power it started with until it ends."""
        model = radio_model(radio) if isinstance(radio, str) else radio
        with self._lock:
            self._settle_radio(self.clock())
            self.radio = model

    def transmit(self, nbytes: int, t: float | None = None) -> float:
        """The radio sends ``nbytes`` from ``t`` (default now); returns the air time in s.

        No radio configured: nothing happens (0.0). A frame sent while the previous one is
        still on the air queues behind it: the radio stays on for both air times.
        """
        if self.radio is None or nbytes <= 0:
            return 0.0
        air = self.radio.airtime_s(nbytes)
        with self._lock:
            t = self.clock() if t is None else float(t)
            self._settle_radio(t)
            if self._radio_until is None:
                self._radio_until = t + air
                self._set_level(self._base_w + self.radio.power_w, t)
            else:
                self._radio_until += air
            self.radio_energy_j += self.radio.power_w * air
        return air

    def _settle_radio(self, t: float) -> None:
        """Record the end of a transmission that finished by ``t`` as a level change."""
        if self._radio_until is not None and self._radio_until <= t:
            end, self._radio_until = self._radio_until, None
            self._set_level(self._base_w, max(end, self._times[-1]))

    def _settle_now(self) -> None:
        if self._radio_until is not None:
            self._settle_radio(self.clock())

    def _set_level(self, watts: float, t: float) -> None:
        level = self.current_for(watts)
        with self._lock:
            last_t = self._times[-1]
            if t < last_t:
                raise ValueError(
                    f"level changes must be in time order: {t} is before the last one ({last_t})"
                )
            if level == self._levels[-1]:
                return
            prev = self._levels[-1]
            dt = t - last_t
            self._cum1.append(self._cum1[-1] + prev * dt)
            self._cum2.append(self._cum2[-1] + prev * prev * dt)
            self._times.append(t)
            self._levels.append(level)
            if len(self._times) > self.max_history:
                drop = len(self._times) // 2
                for lst in (self._times, self._levels, self._cum1, self._cum2):
                    del lst[:drop]

    def set_busy(self, busy: bool, t: float | None = None) -> None:
        self._busy = bool(busy)
        self.set_power(self.busy_w if busy else self.idle_w, t)

    @property
    def is_busy(self) -> bool:
        return self._busy

    @contextlib.contextmanager
    def busy(self) -> Iterator[SimulatedLoad]:
        """``with load.busy(): run_inference()`` — busy power for the duration of the block."""
        self.set_busy(True)
        try:
            yield self
        finally:
            self.set_busy(False)

    def script_bursts(
        self,
        t_start: float,
        t_end: float,
        busy_s: tuple[float, float] = (0.005, 0.04),
        idle_s: tuple[float, float] = (0.005, 0.06),
        seed: int | None = None,
    ) -> list[tuple[float, float]]:
        """Pre-schedule random busy bursts in [t_start, t_end]; returns the (start, end) list.

        Stands in for the daemon's inferences when nothing else drives the load (``power-log
        record --sim``, benchmarks). Burst lengths are uniform in ``busy_s``, gaps in
        ``idle_s``.
        """
        if seed is None:
            self._script_calls += 1
            seed = self.seed * 1_000_003 + self._script_calls
        rng = np.random.default_rng(seed)
        bursts: list[tuple[float, float]] = []
        t = t_start + float(rng.uniform(*idle_s))
        while t < t_end:
            end = min(t_end, t + float(rng.uniform(*busy_s)))
            self.set_power(self.busy_w, t)
            self.set_power(self.idle_w, end)
            bursts.append((t, end))
            t = end + float(rng.uniform(*idle_s))
        return bursts

    def _level_prefix(self, t: float) -> tuple[float, float]:
        """(∫L dt, ∫L² dt) from origin to t (negative for t before the origin)."""
        j = max(0, bisect.bisect_right(self._times, t) - 1)
        lv = self._levels[j]
        dt = t - self._times[j]
        return self._cum1[j] + lv * dt, self._cum2[j] + lv * lv * dt

    # -- noise ---------------------------------------------------------------------

    def _chunk(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hit = self._chunks.get(c)
        if hit is not None:
            self._chunks.move_to_end(c)
            return hit
        z = np.random.default_rng([self.seed, c + _CHUNK_OFFSET]).standard_normal(_CHUNK)
        n = z * self.noise_a
        cs1 = np.concatenate(([0.0], np.cumsum(n)))
        cs2 = np.concatenate(([0.0], np.cumsum(n * n)))
        self._chunks[c] = (n, cs1, cs2)
        if len(self._chunks) > _CACHED_CHUNKS:
            self._chunks.popitem(last=False)
        return n, cs1, cs2

    def _cell(self, k: int) -> float:
        return float(self._chunk(k // _CHUNK)[0][k % _CHUNK])

    def _cells_sum(self, k0: int, k1: int) -> tuple[float, float]:
        """(Σ n, Σ n²) over cells k0 ≤ k < k1."""
        s1 = s2 = 0.0
        k = k0
        while k < k1:
            c = k // _CHUNK
            lo = k - c * _CHUNK
            hi = min(_CHUNK, k1 - c * _CHUNK)
            _, cs1, cs2 = self._chunk(c)
            s1 += cs1[hi] - cs1[lo]
            s2 += cs2[hi] - cs2[lo]
            k = c * _CHUNK + hi
        return float(s1), float(s2)

    def _noise_integrals(self, a: float, b: float) -> tuple[float, float]:
        """(∫n dt, ∫n² dt) over [a, b]."""
        if self.noise_a == 0 or b <= a:
            return 0.0, 0.0
        h = self.noise_cell_s
        ua, ub = (a - self.origin) / h, (b - self.origin) / h
        ka, kb = math.floor(ua), math.floor(ub)
        if ka == kb:
            n = self._cell(ka)
            return n * (b - a), n * n * (b - a)
        na, nb = self._cell(ka), self._cell(kb)
        fa, fb = (ka + 1 - ua) * h, (ub - kb) * h
        m1, m2 = self._cells_sum(ka + 1, kb)
        return na * fa + m1 * h + nb * fb, na * na * fa + m2 * h + nb * nb * fb

    def _level_noise_cross(self, a: float, b: float) -> float:
        """∫L·n dt over [a, b]: split at level changes, L is constant on each piece."""
        if self.noise_a == 0:
            return 0.0
        j = max(0, bisect.bisect_right(self._times, a) - 1)
        total = 0.0
        lo = a
        while lo < b:
            hi = self._times[j + 1] if j + 1 < len(self._times) else math.inf
            hi = min(hi, b)
            if hi > lo:
                total += self._levels[j] * self._noise_integrals(lo, hi)[0]
            lo = hi
            j += 1
        return total

    # -- integrals -----------------------------------------------------------------

    def charge_c(self, a: float, b: float) -> float:
        """∫ I dt over [a, b] in coulombs."""
        if b <= a:
            return 0.0
        with self._lock:
            self._settle_now()
            la, _ = self._level_prefix(a)
            lb, _ = self._level_prefix(b)
            return (lb - la) + self._noise_integrals(a, b)[0]

    def bus_volt_seconds(self, a: float, b: float) -> float:
        """∫ V dt over [a, b] (the bus voltage at the load)."""
        return self.supply_v * (b - a) - self.source_ohms * self.charge_c(a, b)

    def energy_j(self, a: float, b: float) -> float:
        """Ground truth: ∫ V·I dt over [a, b] = supply·∫I − r·∫I² (exact for this model)."""
        if b <= a:
            return 0.0
        with self._lock:
            self._settle_now()
            la1, la2 = self._level_prefix(a)
            lb1, lb2 = self._level_prefix(b)
            n1, n2 = self._noise_integrals(a, b)
            i1 = (lb1 - la1) + n1
            i2 = (lb2 - la2) + 2 * self._level_noise_cross(a, b) + n2
        return self.supply_v * i1 - self.source_ohms * i2

    def mean_power_w(self, a: float, b: float) -> float:
        return self.energy_j(a, b) / (b - a) if b > a else math.nan

    def current_at(self, t: float) -> float:
        """Instantaneous current (for plots and sanity checks)."""
        with self._lock:
            self._settle_now()
            j = max(0, bisect.bisect_right(self._times, t) - 1)
            k = math.floor((t - self.origin) / self.noise_cell_s)
            return self._levels[j] + (self._cell(k) if self.noise_a else 0.0)
