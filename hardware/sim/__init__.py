"""Simulated power-measurement hardware: a fake SMBus, an INA226 register map, a load.

``FakeSMBus`` hosts ``SimulatedINA226`` chips; each chip measures a ``SimulatedLoad`` (idle /
busy watts + noise) that the daemon drives with ``load.set_busy(...)`` or ``with
load.busy():``, and whose exact integrals are the ground truth for energy benchmarks.
(Camera and GPIO simulation live elsewhere in ``hardware``.)
"""

from __future__ import annotations

from typing import Any

from hardware.sim.clock import VirtualClock
from hardware.sim.ina226_chip import SimulatedINA226
from hardware.sim.load import SimulatedLoad
from hardware.sim.smbus import FakeSMBus

__all__ = ["FakeSMBus", "SimulatedINA226", "SimulatedLoad", "VirtualClock", "simulated_load_of"]


def simulated_load_of(reader: Any) -> SimulatedLoad | None:
    """The load behind a simulator-backed INA226 reader (None for real hardware)."""
    bus = getattr(reader, "bus", None)
    if not isinstance(bus, FakeSMBus):
        return None
    chip = bus.device(getattr(reader, "address", -1))
    return chip.load if isinstance(chip, SimulatedINA226) else None
