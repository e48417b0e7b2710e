"""Power measurement for the daemon: a sampler thread plus energy per window.

Why an adapter: the daemon attributes energy to windows it knows about (the head inference,
the whole frame from capture to reply) by asking the sampler for the integral of power over
``[t0, t1]`` on the monotonic clock. With the simulated monitor the daemon also *drives* the
simulated load (busy during head inference, encode and radio), so the simulated power
follows the daemon's real activity instead of a canned trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from device.config import PowerSection
from device.jsonlog import JsonLog


class PowerMeter:
    """Owns the monitor + sampler; every query degrades to ``None`` when there is no monitor."""

    def __init__(self, cfg: PowerSection, log: JsonLog) -> None:
        self.cfg = cfg
        self.log = log
        self.kind = cfg.monitor
        self._sampler: Any = None
        self._load: Any = None  # simulated load (sim monitor only)
        if cfg.monitor == "none":
            return
        from hardware.power import PowerSampler, open_power_monitor

        params = dict(cfg.params)
        reader = open_power_monitor(cfg.monitor, **params)
        self._load = getattr(reader, "load", None)
        self._sampler = PowerSampler(reader, rate_hz=cfg.rate_hz, capacity=cfg.capacity)

    @property
    def enabled(self) -> bool:
        return self._sampler is not None

    def start(self) -> None:
        if self._sampler is not None:
            self._sampler.start()

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()

    def energy_mj(self, t0: float, t1: float) -> float | None:
        if self._sampler is None or t1 <= t0:
            return None
        try:
            return float(self._sampler.energy_j(t0, t1)) * 1e3
        except (ValueError, LookupError) as exc:  # window outside the ring buffer
            self.log.debug("energy_unavailable", error=str(exc))
            return None

    def mean_power_w(self, t0: float, t1: float) -> float | None:
        if self._sampler is None or t1 <= t0:
            return None
        try:
            return float(self._sampler.mean_power_w(t0, t1))
        except (ValueError, LookupError):
            return None

    @contextlib.contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """Mark the simulated board busy with ``what`` (head/encode/radio) for the block."""
        if self._load is None:
            yield
            return
        self._load.begin(what)
        try:
            yield
        finally:
            self._load.end(what)
