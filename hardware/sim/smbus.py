"""An in-process I2C bus with ``smbus2.SMBus``'s method signatures.

Why: the INA226 driver takes any SMBus-like object, so tests and the ``--sim`` mode hand it
this bus, with simulated chips attached at their addresses. It reproduces the two things a
driver can get wrong on real hardware: SMBus word transfers are little-endian while the
INA226 sends its registers MSB first, and an address nobody answers at fails with
``OSError(errno.EREMOTEIO)`` (121, a NACK), exactly as the Linux i2c-dev driver reports it.
Faults can be injected to exercise retry paths.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["FakeSMBus", "RegisterDevice"]


class RegisterDevice(Protocol):
    """A chip with 16-bit registers (big-endian on the wire)."""

    def read_register(self, reg: int) -> int: ...
    def write_register(self, reg: int, value: int) -> None: ...


def _nack(addr: int) -> OSError:
    return OSError(errno.EREMOTEIO, f"{os.strerror(errno.EREMOTEIO)} (no ACK from 0x{addr:02x})")


class FakeSMBus:
    """Simulated I2C adapter. ``bus_number`` only appears in error messages."""

    def __init__(
        self, bus_number: int | str = 1, on_transaction: Callable[[], None] | None = None
    ) -> None:
        """``on_transaction`` runs once per transfer, e.g. to advance a virtual clock by the
        time a word transfer takes on the wire (≈47 bit times: 118 µs at 400 kHz)."""
        self.bus_number = bus_number
        self._on_transaction = on_transaction
        self._devices: dict[int, RegisterDevice] = {}
        self._lock = threading.Lock()
        self._faults: deque[tuple[int | None, int]] = deque()
        self._error_rate = 0.0
        self._error_errno = errno.EREMOTEIO
        self._rng = random.Random(0)
        self.closed = False
        self.transactions = 0
        self.injected_errors = 0

    # -- wiring and faults ---------------------------------------------------------

    def attach(self, address: int, device: RegisterDevice) -> None:
        if not 0 <= address <= 0x7F:
            raise ValueError(f"7-bit I2C address expected, got {address!r}")
        self._devices[address] = device

    def detach(self, address: int) -> None:
        self._devices.pop(address, None)

    def device(self, address: int) -> RegisterDevice | None:
        return self._devices.get(address)

    def fail_next(self, count: int = 1, err: int = errno.EREMOTEIO, address: int | None = None):
        """The next ``count`` transactions (to ``address``, or any) fail with ``OSError(err)``."""
        with self._lock:
            self._faults.extend([(address, err)] * count)

    def set_error_rate(self, rate: float, err: int = errno.EREMOTEIO, seed: int = 0) -> None:
        """Each transaction fails independently with probability ``rate``."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"error rate must be in [0, 1), got {rate}")
        self._error_rate, self._error_errno = rate, err
        self._rng = random.Random(seed)

    def _begin(self, addr: int) -> RegisterDevice:
        if self.closed:
            raise OSError(errno.EBADF, "bus is closed")
        self.transactions += 1
        if self._on_transaction is not None:
            self._on_transaction()
        if self._faults and self._faults[0][0] in (None, addr):
            _, err = self._faults.popleft()
            self.injected_errors += 1
            raise OSError(err, os.strerror(err))
        if self._error_rate and self._rng.random() < self._error_rate:
            self.injected_errors += 1
            raise OSError(self._error_errno, os.strerror(self._error_errno))
        dev = self._devices.get(addr)
        if dev is None:
            raise _nack(addr)
        return dev

    # -- smbus2.SMBus interface ----------------------------------------------------

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        with self._lock:
            v = self._begin(i2c_addr).read_register(register) & 0xFFFF
        return ((v & 0xFF) << 8) | (v >> 8)  # MSB arrives first = low byte of the SMBus word

    def write_word_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"word out of range: {value}")
        with self._lock:
            dev = self._begin(i2c_addr)
            dev.write_register(register, ((value & 0xFF) << 8) | (value >> 8))

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        if length != 2:
            raise OSError(errno.EINVAL, "this simulated chip has 16-bit registers: length 2")
        with self._lock:
            v = self._begin(i2c_addr).read_register(register) & 0xFFFF
        return [v >> 8, v & 0xFF]

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: list[int], force: bool | None = None
    ) -> None:
        if len(data) != 2 or any(not 0 <= b <= 0xFF for b in data):
            raise OSError(errno.EINVAL, "expected two bytes [MSB, LSB]")
        with self._lock:
            self._begin(i2c_addr).write_register(register, (data[0] << 8) | data[1])

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeSMBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
