"""The INA226 error hierarchy, shared by the I2C driver, the hwmon reader and the register model.

Why its own module: the register model (calibration, timing) raises configuration errors,
the driver raises bus errors, and the hwmon backend raises the same "not found" / "transient"
errors for the kernel's view of the chip; keeping the classes apart from all three lets each
import them without importing the others.
"""

from __future__ import annotations

__all__ = ["INA226ConfigError", "INA226Error", "INA226NotFound", "INA226TransientError"]


class INA226Error(Exception):
    """Any INA226 failure; names the I2C bus and address so a board with several chips is
    debuggable from the message alone."""

    def __init__(self, message: str, *, bus: object = None, address: int | None = None) -> None:
        where = _where(bus, address)
        super().__init__(f"{where}: {message}" if where else message)
        self.bus = bus
        self.address = address


class INA226NotFound(INA226Error):
    """Nothing answers at the address, the bus does not exist, or the chip is not an INA226."""


class INA226TransientError(INA226Error):
    """A read kept failing with transient I2C errors after the bounded retries."""


class INA226ConfigError(INA226Error, ValueError):
    """Impossible configuration (calibration out of range, unknown averaging, ...)."""


def _where(bus: object, address: int | None) -> str:
    if bus is None and address is None:
        return ""
    parts = []
    if bus is not None:
        parts.append(f"I2C bus {bus}")
    if address is not None:
        parts.append(f"address 0x{address:02x}")
    return "INA226 at " + " ".join(parts)
