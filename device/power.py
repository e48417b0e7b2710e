"""Power measurement for the daemon: a sampler thread plus energy per window.

Why an adapter: the daemon attributes energy to windows it knows about (the head inference,
the whole frame from capture to reply) by asking the sampler for the integral of power over
``[t0, t1]`` on the monotonic clock. With the simulated monitor the daemon also *drives* the
simulated load (busy during head inference, encode and the radio send), so the simulated
power follows the daemon's real activity instead of a canned trace. Two threads mark
activity (main loop: head/encode, link thread: send), so busy is reference-counted.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

from device.config import PowerSection
from hardware.monitor import open_power_monitor
from hardware.power import PowerSampler
from hardware.powerlog import PowerLogWriter, SamplerDrain
from hardware.sim import simulated_load_of
from hardware.sim.replay import ReplayClock
from wire.logjson import get_logger

SIM_HISTORY = 4096  # level changes the simulated load keeps in the daemon (~128 kB)


class PowerMeter:
    """Owns the monitor + sampler; every query degrades to ``None`` when there is no monitor."""

    def __init__(self, cfg: PowerSection) -> None:
        self.cfg = cfg
        self.log = get_logger(__name__)
        self.kind = cfg.monitor
        self._sampler: PowerSampler | None = None
        self._drain: SamplerDrain | None = None
        self._load: Any = None
        self._busy_lock = threading.Lock()
        self._busy_count = 0
        self._idle = threading.Event()  # set while nothing is marked busy
        self._idle.set()
        params = dict(cfg.params)
        # The simulated chip is read a few ms after the fact, in batches (ReplayClock): same
        # driver code and samples, 40 wake-ups a second instead of rate_hz, so the sampler
        # thread stops taking the GIL in the middle of every frame's preprocess and head.
        self._replay: ReplayClock | None = None
        if cfg.monitor == "sim" and params.get("alert_pin") is None:
            self._replay = ReplayClock(quiet=self._idle.wait)
            params["chip_clock"] = self._replay
        reader = open_power_monitor(cfg.monitor, **params)
        if reader is None:
            return
        self._load = simulated_load_of(reader)
        if self._load is not None:
            # Only the simulated chip reads the load's history, and only its last conversion
            # cycle: a few seconds of level changes is plenty (a daemon makes ~400 a second).
            self._load.max_history = min(self._load.max_history, SIM_HISTORY)
        clock = {} if self._replay is None else {"clock": self._replay, "sleep": self._replay.sleep}
        self._sampler = PowerSampler(reader, rate_hz=cfg.rate_hz, capacity=cfg.capacity, **clock)

    @property
    def enabled(self) -> bool:
        return self._sampler is not None

    @property
    def load(self) -> Any:
        """The simulated load (sim monitor only), for tests and benchmarks."""
        return self._load

    def start(self) -> None:
        """Start sampling, and open the power log only now: building a meter writes nothing
        (``splitfit-device --check`` builds one and must leave the disk as it was)."""
        if self._sampler is None:
            return
        if self.cfg.log_path is not None and self._drain is None:
            self.cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
            meta = {"source": self.cfg.monitor, "rate_hz": self.cfg.rate_hz, **self.cfg.params}
            self._drain = SamplerDrain(self._sampler, PowerLogWriter(self.cfg.log_path, meta=meta))
        if not self._sampler.running:
            if self._replay is not None:
                self._replay.resync()  # nothing to replay from before the daemon started
            self._sampler.start()

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        if self._drain is not None:
            self._drain()
            self._drain.writer.close()
            self._drain = None

    def drain_log(self) -> None:
        """Append the samples taken since the last call to the power log (if configured)."""
        if self._drain is not None:
            self._drain()

    def covered(self, t0: float, t1: float) -> bool:
        """True once the sampler has samples through ``t1`` (energy over the window is whole)."""
        if self._sampler is None:
            return True
        return self._sampler.coverage(t0, t1) >= 0.999

    def wait_until(self, t: float, timeout: float) -> bool:
        return True if self._sampler is None else self._sampler.wait_until(t, timeout)

    def energy_mj(self, t0: float, t1: float) -> float | None:
        if self._sampler is None or t1 <= t0:
            return None
        e = float(self._sampler.energy_j(t0, t1)) * 1e3
        return e if math.isfinite(e) else None

    def mean_power_w(self, t0: float, t1: float) -> float | None:
        if self._sampler is None or t1 <= t0:
            return None
        p = float(self._sampler.mean_power_w(t0, t1))
        return p if math.isfinite(p) else None

    def transmit(self, nbytes: int) -> None:
        """A frame of ``nbytes`` went onto the link: the simulated radio draws its transmit
        power for the air time (``power.params.radio``); real monitors measure it anyway."""
        if self._load is not None:
            self._load.transmit(nbytes)

    def set_radio(self, radio: str | None) -> bool:
        """Use another simulated radio (``power.params.radio``) from now on; False when the
        monitor has no simulated load (a real INA226 measures the radio it has)."""
        if self._load is None:
            return False
        self._load.set_radio(radio)
        return True

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark the (simulated) board busy for the block; nests across threads."""
        if self._load is None:
            yield
            return
        with self._busy_lock:
            self._busy_count += 1
            if self._busy_count == 1:
                self._idle.clear()
                self._load.set_busy(True)
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy_count -= 1
                if self._busy_count == 0:
                    self._load.set_busy(False)
                    self._idle.set()
