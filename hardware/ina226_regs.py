"""The INA226 register model from the datasheet (SBOS547): addresses, bit fields, encodings.

Why its own module: the driver (:mod:`hardware.ina226`) and the register-level simulator
(:mod:`hardware.sim.ina226_chip`) must agree on every bit, so both read this one description
of the chip instead of the simulator importing the driver. Nothing here touches a bus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from hardware.ina226_errors import INA226ConfigError

__all__ = [
    "ALERT_FUNCTIONS",
    "AVERAGING",
    "CONVERSION_TIMES_US",
    "DIE_ID",
    "MANUFACTURER_ID",
    "MODE_NAMES",
    "SHUNT_FULL_SCALE_V",
    "Calibration",
    "Mode",
    "Reg",
    "Timing",
    "compute_calibration",
    "decode_config",
    "encode_config",
    "parse_mode",
    "timing_for_rate",
]


class Reg(IntEnum):
    """Register pointer addresses (datasheet table "Register Set Summary")."""

    CONFIG = 0x00
    SHUNT_VOLTAGE = 0x01
    BUS_VOLTAGE = 0x02
    POWER = 0x03
    CURRENT = 0x04
    CALIBRATION = 0x05
    MASK_ENABLE = 0x06
    ALERT_LIMIT = 0x07
    MANUFACTURER_ID = 0xFE
    DIE_ID = 0xFF


class Mode(IntEnum):
    """Operating modes, configuration register bits 2..0."""

    POWER_DOWN = 0b000
    SHUNT_TRIGGERED = 0b001
    BUS_TRIGGERED = 0b010
    SHUNT_BUS_TRIGGERED = 0b011
    POWER_DOWN_ALT = 0b100
    SHUNT_CONTINUOUS = 0b101
    BUS_CONTINUOUS = 0b110
    SHUNT_BUS_CONTINUOUS = 0b111

    @property
    def continuous(self) -> bool:
        return self in (Mode.SHUNT_CONTINUOUS, Mode.BUS_CONTINUOUS, Mode.SHUNT_BUS_CONTINUOUS)

    @property
    def triggered(self) -> bool:
        return self in (Mode.SHUNT_TRIGGERED, Mode.BUS_TRIGGERED, Mode.SHUNT_BUS_TRIGGERED)

    @property
    def measures_shunt(self) -> bool:
        return bool(self & 0b001)

    @property
    def measures_bus(self) -> bool:
        return bool(self & 0b010)


# Short names accepted in configs and on the command line.
MODE_NAMES: dict[str, Mode] = {
    "continuous": Mode.SHUNT_BUS_CONTINUOUS,
    "triggered": Mode.SHUNT_BUS_TRIGGERED,
    "shunt_continuous": Mode.SHUNT_CONTINUOUS,
    "bus_continuous": Mode.BUS_CONTINUOUS,
    "shunt_triggered": Mode.SHUNT_TRIGGERED,
    "bus_triggered": Mode.BUS_TRIGGERED,
    "power_down": Mode.POWER_DOWN,
}

AVERAGING: tuple[int, ...] = (1, 4, 16, 64, 128, 256, 512, 1024)  # AVG bits 11..9
CONVERSION_TIMES_US: tuple[int, ...] = (140, 204, 332, 588, 1100, 2116, 4156, 8244)  # CT codes

MANUFACTURER_ID = 0x5449  # "TI"
DIE_ID = 0x2260  # die 0x226, revision 0
SHUNT_LSB_V = 2.5e-6
BUS_LSB_V = 1.25e-3
SHUNT_FULL_SCALE_V = 32768 * SHUNT_LSB_V  # 81.92 mV
CAL_SCALE = 0.00512  # the datasheet's internal fixed value
CONFIG_RESERVED_BITS = 0b100 << 12  # bits 14..12 always read 100b
CONFIG_RESET_BIT = 1 << 15
DEFAULT_CONFIG = 0x4127

# mask/enable register bits
ME_SOL, ME_SUL, ME_BOL, ME_BUL, ME_POL, ME_CNVR = (1 << b for b in (15, 14, 13, 12, 11, 10))
ME_AFF, ME_CVRF, ME_OVF, ME_APOL, ME_LEN = (1 << b for b in (4, 3, 2, 1, 0))
ALERT_FUNCTIONS: dict[str, int] = {
    "shunt_over": ME_SOL,
    "shunt_under": ME_SUL,
    "bus_over": ME_BOL,
    "bus_under": ME_BUL,
    "power_over": ME_POL,
    "conversion_ready": ME_CNVR,
}


# --------------------------------------------------------------------------- encodings


def _code_of(value: int, table: tuple[int, ...], what: str) -> int:
    try:
        return table.index(int(value))
    except ValueError:
        raise INA226ConfigError(
            f"{what} must be one of {', '.join(map(str, table))}, got {value!r}"
        ) from None


def parse_mode(mode: Mode | int | str) -> Mode:
    if isinstance(mode, Mode):
        return mode
    if isinstance(mode, str):
        key = mode.strip().lower()
        if key in MODE_NAMES:
            return MODE_NAMES[key]
        raise INA226ConfigError(f"mode must be one of {', '.join(MODE_NAMES)}, got {mode!r}")
    if isinstance(mode, int) and 0 <= mode <= 7:
        return Mode(mode)
    raise INA226ConfigError(f"mode must be a name or 0..7, got {mode!r}")


@dataclass(frozen=True)
class Timing:
    """ADC averaging and conversion times; ``cycle_s`` is the time between register updates."""

    averaging: int = 1
    bus_conv_us: int = 1100
    shunt_conv_us: int = 1100
    mode: Mode = Mode.SHUNT_BUS_CONTINUOUS

    def __post_init__(self) -> None:
        _code_of(self.averaging, AVERAGING, "averaging")
        _code_of(self.bus_conv_us, CONVERSION_TIMES_US, "bus_conv_us")
        _code_of(self.shunt_conv_us, CONVERSION_TIMES_US, "shunt_conv_us")

    @property
    def cycle_s(self) -> float:
        per = 0.0
        if self.mode.measures_shunt:
            per += self.shunt_conv_us
        if self.mode.measures_bus:
            per += self.bus_conv_us
        return self.averaging * per * 1e-6

    @property
    def max_rate_hz(self) -> float:
        return 1.0 / self.cycle_s if self.cycle_s > 0 else 0.0


def encode_config(
    averaging: int = 1,
    bus_conv_us: int = 1100,
    shunt_conv_us: int = 1100,
    mode: Mode | int | str = Mode.SHUNT_BUS_CONTINUOUS,
) -> int:
    """Configuration register value; the default arguments give the power-on 0x4127."""
    return (
        CONFIG_RESERVED_BITS
        | _code_of(averaging, AVERAGING, "averaging") << 9
        | _code_of(bus_conv_us, CONVERSION_TIMES_US, "bus_conv_us") << 6
        | _code_of(shunt_conv_us, CONVERSION_TIMES_US, "shunt_conv_us") << 3
        | int(parse_mode(mode))
    )


def decode_config(value: int) -> Timing:
    return Timing(
        averaging=AVERAGING[(value >> 9) & 0b111],
        bus_conv_us=CONVERSION_TIMES_US[(value >> 6) & 0b111],
        shunt_conv_us=CONVERSION_TIMES_US[(value >> 3) & 0b111],
        mode=Mode(value & 0b111),
    )


def timing_for_rate(rate_hz: float, mode: Mode | int | str = "continuous") -> Timing:
    """The chip timing whose update cycle is the longest that still fits one sampling period.

    Why: the ADC integrates over its conversion windows, so a cycle that fills the sampling
    period sees (nearly) all of the load's energy, while a much shorter cycle would alias
    bursts in and out. Equal bus/shunt conversion times; raises if the rate is faster than
    the chip can deliver (1 average, 140 µs + 140 µs: 3571 Hz).
    """
    m = parse_mode(mode)
    if not (rate_hz > 0 and math.isfinite(rate_hz)):
        raise INA226ConfigError(f"rate_hz must be a positive number, got {rate_hz!r}")
    period = 1.0 / rate_hz
    best: Timing | None = None
    for avg in AVERAGING:
        for ct in CONVERSION_TIMES_US:
            t = Timing(avg, ct, ct, m)
            if t.cycle_s <= period * (1 + 1e-9) and (best is None or t.cycle_s > best.cycle_s):
                best = t
    if best is None:
        fastest = Timing(1, 140, 140, m)
        raise INA226ConfigError(
            f"rate {rate_hz:g} Hz is faster than the INA226 can convert "
            f"(fastest cycle {fastest.cycle_s * 1e6:.0f} µs = {fastest.max_rate_hz:.0f} Hz)"
        )
    return best


@dataclass(frozen=True)
class Calibration:
    """Datasheet calibration: ``current_lsb_a`` is the effective LSB after rounding CAL."""

    shunt_ohms: float
    max_current_a: float
    cal: int
    current_lsb_a: float
    power_lsb_w: float


def compute_calibration(shunt_ohms: float, max_current_a: float | None = None) -> Calibration:
    """Current_LSB = Imax/2^15, CAL = trunc(0.00512/(Current_LSB·R)), Power_LSB = 25·Current_LSB.

    ``max_current_a=None`` uses the shunt's full range (81.92 mV / R). The LSB returned is the
    one the truncated integer CAL really implements (0.00512/(CAL·R)), which removes up to
    1/CAL of systematic scale error compared with using the nominal LSB.
    """
    if not (isinstance(shunt_ohms, (int, float)) and math.isfinite(shunt_ohms) and shunt_ohms > 0):
        raise INA226ConfigError(f"shunt_ohms must be a positive number, got {shunt_ohms!r}")
    if max_current_a is None:
        max_current_a = SHUNT_FULL_SCALE_V / shunt_ohms
    if not (
        isinstance(max_current_a, (int, float))
        and math.isfinite(max_current_a)
        and max_current_a > 0
    ):
        raise INA226ConfigError(f"max_current_a must be a positive number, got {max_current_a!r}")
    v_max = max_current_a * shunt_ohms
    if v_max > SHUNT_FULL_SCALE_V * (1 + 1e-9):
        raise INA226ConfigError(
            f"max_current_a={max_current_a:g} A through shunt_ohms={shunt_ohms:g} Ω needs "
            f"{v_max * 1e3:.2f} mV across the shunt, beyond the INA226's ±81.92 mV range: the "
            f"most this shunt can measure is {SHUNT_FULL_SCALE_V / shunt_ohms:.4g} A "
            f"(use a shunt ≤ {SHUNT_FULL_SCALE_V / max_current_a:.4g} Ω for {max_current_a:g} A)"
        )
    nominal_lsb = max_current_a / 32768
    cal = int(CAL_SCALE / (nominal_lsb * shunt_ohms))
    if cal < 1:
        raise INA226ConfigError(
            f"calibration for shunt_ohms={shunt_ohms:g}, max_current_a={max_current_a:g} "
            "rounds to 0"
        )
    if cal > 0x7FFF:
        raise INA226ConfigError(
            f"calibration {cal} does not fit the 15-bit CAL register: max_current_a="
            f"{max_current_a:g} A gives only {v_max * 1e3:.3f} mV across {shunt_ohms:g} Ω "
            f"(needs ≥ {CAL_SCALE * 32768 / 0x7FFF * 1e3:.3f} mV); raise max_current_a to ≥ "
            f"{CAL_SCALE * 32768 / 0x7FFF / shunt_ohms:.4g} A"
        )
    lsb = CAL_SCALE / (cal * shunt_ohms)
    return Calibration(shunt_ohms, float(max_current_a), cal, lsb, 25 * lsb)
