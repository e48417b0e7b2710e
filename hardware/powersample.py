"""What a power monitor returns: one :class:`PowerSample`, and the reader protocol.

Why its own module: the readers (INA226 driver, hwmon backend, simulator) produce samples and
the sampler consumes them; with the type here neither side imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["PowerReader", "PowerSample"]


@dataclass(frozen=True)
class PowerSample:
    """One reading. ``timestamp`` is ``time.monotonic()`` when the registers were read.

    ``age_s``: estimated time from the middle of the ADC window that produced these values to
    ``timestamp`` (0 if unknown); ``fresh``: a new conversion completed since the previous
    read; ``overflow``: the chip flagged a math overflow (current/power may be invalid).
    ``power_w`` carries the sign of the current (reverse flow is negative energy).
    """

    bus_voltage_v: float
    shunt_voltage_v: float
    current_a: float
    power_w: float
    timestamp: float
    fresh: bool = True
    overflow: bool = False
    age_s: float = 0.0

    @property
    def t_mid(self) -> float:
        """Best estimate of when this power was actually drawn."""
        return self.timestamp - self.age_s


class PowerReader(Protocol):
    def read(self) -> PowerSample: ...
