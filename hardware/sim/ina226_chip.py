"""Register-level INA226 model: what the real chip would answer at each moment.

Why this level: the driver under test must be the real one, so the simulator speaks 16-bit
registers and reproduces the datasheet's behaviour — shunt/bus ADC quantization (2.5 µV,
1.25 mV), averaging over N conversions, conversion timing (registers change only when a
whole averaging cycle completes; CVRF is set then and cleared by reading mask/enable or
writing config), CAL-based current and power arithmetic with its overflow flag, the alert
functions and limit, triggered and continuous modes, reset, and the id registers.

Time is evaluated lazily: on each register access the chip works out which conversion cycle
last completed (from the config-write time and the cycle length) and computes that cycle's
values from the load's exact integrals over its shunt and bus conversion windows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from hardware.ina226_regs import (
    ALERT_FUNCTIONS,
    BUS_LSB_V,
    CONFIG_RESERVED_BITS,
    CONFIG_RESET_BIT,
    DEFAULT_CONFIG,
    DIE_ID,
    MANUFACTURER_ID,
    ME_AFF,
    ME_APOL,
    ME_BOL,
    ME_BUL,
    ME_CNVR,
    ME_CVRF,
    ME_LEN,
    ME_OVF,
    ME_POL,
    ME_SOL,
    ME_SUL,
    SHUNT_LSB_V,
    Mode,
    Reg,
    decode_config,
)
from hardware.sim.load import SimulatedLoad

__all__ = ["SimulatedINA226"]

_ME_WRITABLE = ME_SOL | ME_SUL | ME_BOL | ME_BUL | ME_POL | ME_CNVR | ME_APOL | ME_LEN
_ALERT_PRIORITY = (ME_SOL, ME_SUL, ME_BOL, ME_BUL, ME_POL, ME_CNVR)  # datasheet: first wins
assert set(_ALERT_PRIORITY) == set(ALERT_FUNCTIONS.values())


def _s16(v: int) -> int:
    return v - 0x10000 if v & 0x8000 else v


class SimulatedINA226:
    """An INA226 measuring ``load`` through a ``shunt_ohms`` shunt.

    ``manufacturer_id``/``die_id`` can be changed to impersonate another chip (for the
    driver's wrong-chip error). ``shunt_ohms`` is the *physical* shunt, which may differ from
    what the driver is told (tolerance experiments).
    """

    def __init__(
        self,
        load: SimulatedLoad,
        shunt_ohms: float = 0.1,
        *,
        manufacturer_id: int = MANUFACTURER_ID,
        die_id: int = DIE_ID,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not (math.isfinite(shunt_ohms) and shunt_ohms > 0):
            raise ValueError(f"shunt_ohms must be positive, got {shunt_ohms!r}")
        self.load = load
        self.shunt_ohms = float(shunt_ohms)
        self.clock = clock or load.clock
        self.manufacturer_id = manufacturer_id
        self.die_id = die_id
        self._lock = threading.RLock()
        self.conversions = 0  # completed cycles actually computed (for tests/benchmarks)
        # ALERT pin listener: called with the new pin level (True = high) when it changes;
        # see hardware.sim.alert.AlertPinDriver, which wires it to a gpiozero mock pin
        self.on_alert_change: Callable[[bool], None] | None = None
        self._pin_high = True
        self._reset()

    # -- state ---------------------------------------------------------------------

    def _reset(self) -> None:
        self.config = DEFAULT_CONFIG
        self.calibration = 0
        self.mask_enable = 0  # writable control bits only
        self.alert_limit = 0
        self.shunt = 0
        self.bus = 0
        self.current = 0
        self.power = 0
        self.cvrf = False
        self.ovf = False
        self.aff = False
        self._restart()

    def _restart(self) -> None:
        """Conversions (re)start now with the current config (config write or reset)."""
        self._set_timing()
        self._start = self.clock()
        self._done = 0  # cycles already reflected in the registers
        self.cvrf = False

    def _set_timing(self) -> None:
        self._timing = decode_config(self.config)
        mode = self._timing.mode
        self._cycle = self._timing.cycle_s
        self._off = mode in (Mode.POWER_DOWN, Mode.POWER_DOWN_ALT)
        self._triggered = mode.triggered

    @property
    def cycle_s(self) -> float:
        return self._timing.cycle_s

    def _advance(self) -> None:
        if self._off:
            return
        cycle = self._cycle
        k = int((self.clock() - self._start) / cycle)
        if self._triggered:
            k = min(k, 1)
        if k > self._done:
            self._convert(self._start + (k - 1) * cycle)
            self._done = k

    def _convert(self, w0: float) -> None:
        """One complete averaging cycle starting at w0: update registers, flags, alert."""
        tm = self._timing
        n = tm.averaging
        cs = tm.shunt_conv_us * 1e-6 if tm.mode.measures_shunt else 0.0
        cb = tm.bus_conv_us * 1e-6 if tm.mode.measures_bus else 0.0
        step = cs + cb
        load = self.load
        if cs:
            q = sum(load.charge_c(w0 + j * step, w0 + j * step + cs) for j in range(n))
            v_shunt = q * self.shunt_ohms / (n * cs)
            self.shunt = max(-32768, min(32767, round(v_shunt / SHUNT_LSB_V)))
        if cb:
            vs = sum(
                load.bus_volt_seconds(w0 + j * step + cs, w0 + (j + 1) * step) for j in range(n)
            )
            self.bus = max(0, min(0x7FFF, round(vs / (n * cb) / BUS_LSB_V)))
        overflow = False
        if self.calibration == 0:
            self.current = self.power = 0  # the chip computes nothing until CAL is written
        else:
            cur = int(self.shunt * self.calibration / 2048)
            if not -32768 <= cur <= 32767:
                overflow = True
                cur = max(-32768, min(32767, cur))
            pw = int(abs(cur) * self.bus / 20000)
            if pw > 0xFFFF:
                overflow = True
                pw = 0xFFFF
            self.current, self.power = cur, pw
        self.ovf = overflow
        self.cvrf = True
        self.conversions += 1
        self._evaluate_alert()

    def _evaluate_alert(self) -> None:
        fn = next((b for b in _ALERT_PRIORITY if self.mask_enable & b), 0)
        limit = self.alert_limit
        hit = {
            ME_SOL: lambda: self.shunt > _s16(limit),
            ME_SUL: lambda: self.shunt < _s16(limit),
            ME_BOL: lambda: self.bus > limit,
            ME_BUL: lambda: self.bus < limit,
            ME_POL: lambda: self.power > limit,
            ME_CNVR: lambda: True,
            0: lambda: False,
        }[fn]()
        latch = bool(self.mask_enable & ME_LEN)
        self.aff = hit or (latch and self.aff)
        self._notify_alert()

    def _notify_alert(self) -> None:
        if self.on_alert_change is not None:
            high = self.aff == bool(self.mask_enable & ME_APOL)
            if high != self._pin_high:
                self._pin_high = high
                self.on_alert_change(high)

    def next_conversion_at(self) -> float | None:
        """When the next conversion cycle completes (None when nothing is converting)."""
        with self._lock:
            if self._off or (self._triggered and self._done >= 1):
                return None
            return self._start + (self._done + 1) * self._cycle

    def poke(self) -> None:
        """Bring the registers and the ALERT pin up to date with the clock."""
        with self._lock:
            self._advance()

    @property
    def alert_asserted(self) -> bool:
        """Logical ALERT state (the pin is open-drain, active low unless APOL is set)."""
        with self._lock:
            self._advance()
            return self.aff

    @property
    def alert_pin_high(self) -> bool:
        active_high = bool(self.mask_enable & ME_APOL)
        return self.alert_asserted == active_high

    # -- register interface (what FakeSMBus calls) ---------------------------------

    def read_register(self, reg: int) -> int:
        with self._lock:
            self._advance()
            if reg == Reg.CONFIG:
                return (self.config & 0x0FFF) | CONFIG_RESERVED_BITS
            if reg == Reg.SHUNT_VOLTAGE:
                return self.shunt & 0xFFFF
            if reg == Reg.BUS_VOLTAGE:
                return self.bus & 0x7FFF
            if reg == Reg.POWER:
                return self.power & 0xFFFF
            if reg == Reg.CURRENT:
                return self.current & 0xFFFF
            if reg == Reg.CALIBRATION:
                return self.calibration
            if reg == Reg.MASK_ENABLE:
                value = (
                    self.mask_enable
                    | (ME_AFF if self.aff else 0)
                    | (ME_CVRF if self.cvrf else 0)
                    | (ME_OVF if self.ovf else 0)
                )
                self.cvrf = False  # datasheet: reading mask/enable clears CVRF
                if self.mask_enable & (ME_LEN | ME_CNVR):
                    self.aff = False  # latched / conversion-ready alert clears on read
                self._notify_alert()
                return value
            if reg == Reg.ALERT_LIMIT:
                return self.alert_limit
            if reg == Reg.MANUFACTURER_ID:
                return self.manufacturer_id
            if reg == Reg.DIE_ID:
                return self.die_id
            return 0

    def write_register(self, reg: int, value: int) -> None:
        value &= 0xFFFF
        with self._lock:
            self._advance()
            if reg == Reg.CONFIG:
                if value & CONFIG_RESET_BIT:
                    self._reset()
                    return
                self.config = (value & 0x0FFF) | CONFIG_RESERVED_BITS
                mode = Mode(value & 0b111)
                if mode in (Mode.POWER_DOWN, Mode.POWER_DOWN_ALT):
                    self._set_timing()  # conversions stop; CVRF is kept in power-down
                else:
                    self._restart()
            elif reg == Reg.CALIBRATION:
                self.calibration = value & 0x7FFF  # bit 15 is reserved
            elif reg == Reg.MASK_ENABLE:
                self.mask_enable = value & _ME_WRITABLE
                self._notify_alert()
            elif reg == Reg.ALERT_LIMIT:
                self.alert_limit = value
            # writes to read-only registers are ignored, as on the chip
