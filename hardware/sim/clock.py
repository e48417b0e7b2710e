"""A virtual monotonic clock for deterministic runs of the sampling chain.

Why: on a shared or loaded host the scheduler decides when a sampler thread wakes, so timing
results mix the chip/driver/integration with the host. With this clock (passed as ``clock``
and ``sleep`` to the load, chip, driver and :class:`hardware.power.PowerSampler`, and as the
``on_transaction`` cost of a :class:`hardware.sim.FakeSMBus`) time advances only when the
sampler sleeps or the bus transfers a word, exactly as asked.
"""

from __future__ import annotations

import threading

__all__ = ["I2C_WORD_BITS", "VirtualClock"]

# One SMBus word read on the wire: START, address+W, register, repeated START, address+R, two
# data bytes with ACKs, STOP ≈ 47 bit times (118 µs at 400 kHz, 47 µs at 1 MHz).
I2C_WORD_BITS = 47


class VirtualClock:
    """Callable like ``time.monotonic``; ``sleep`` and ``advance`` move it forward."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = float(t)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        if dt > 0:
            with self._lock:
                self.t += dt

    advance = sleep

    def i2c_cost(self, bus_hz: float):
        """An ``on_transaction`` hook charging one word transfer at ``bus_hz``."""
        dt = I2C_WORD_BITS / bus_hz
        return lambda: self.sleep(dt)
