"""TI INA226 current/power monitor driver over any ``smbus2.SMBus``-like object.

Why a hand-written driver: the board measures its own energy per inference, and the numbers
are only as good as the calibration and timing logic. Everything here follows the datasheet
(SBOS547): 16-bit big-endian registers, a calibration register derived from the shunt and
the maximum expected current, conversion-ready / math-overflow flags in the mask/enable
register. The register-level simulator in :mod:`hardware.sim` implements the same datasheet
so this exact code path runs in tests without a board.

Usage::

    from smbus2 import SMBus
    chip = INA226(SMBus(1), address=0x40, shunt_ohms=0.1)
    sample = chip.read()          # PowerSample(bus_voltage_v, shunt_voltage_v, current_a, ...)
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from hardware.power import PowerSample

__all__ = [
    "AVERAGING",
    "CONVERSION_TIMES_US",
    "DIE_ID",
    "INA226",
    "MANUFACTURER_ID",
    "SHUNT_FULL_SCALE_V",
    "Calibration",
    "INA226ConfigError",
    "INA226Error",
    "INA226NotFound",
    "INA226TransientError",
    "Mode",
    "PowerSample",
    "Reg",
    "Timing",
    "compute_calibration",
    "decode_config",
    "encode_config",
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

# errno values an I2C adapter reports for a glitch worth retrying (NACK, bus timeout, ...).
TRANSIENT_ERRNOS = frozenset(
    {errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT, errno.EAGAIN, errno.EBUSY, errno.ENXIO}
)


class SMBusLike(Protocol):
    def read_word_data(self, i2c_addr: int, register: int) -> int: ...
    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None: ...


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
    if not (isinstance(shunt_ohms, int | float) and math.isfinite(shunt_ohms) and shunt_ohms > 0):
        raise INA226ConfigError(f"shunt_ohms must be a positive number, got {shunt_ohms!r}")
    if max_current_a is None:
        max_current_a = SHUNT_FULL_SCALE_V / shunt_ohms
    if not (
        isinstance(max_current_a, int | float)
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


def _swap16(v: int) -> int:
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)


# --------------------------------------------------------------------------- driver


class INA226:
    """One INA226 on an SMBus. Probes the ids, programs config + calibration, reads samples.

    ``averaging``/``bus_conv_us``/``shunt_conv_us`` left as None mean "not pinned": the chip
    starts at the datasheet defaults and :meth:`adapt_to_rate` (called by
    :class:`hardware.power.PowerSampler`) picks the timing that fits the sampling period.
    """

    def __init__(
        self,
        bus: Any,
        address: int = 0x40,
        shunt_ohms: float = 0.1,
        max_current_a: float | None = None,
        averaging: int | None = None,
        bus_conv_us: int | None = None,
        shunt_conv_us: int | None = None,
        mode: Mode | int | str = "continuous",
        *,
        retries: int = 3,
        retry_delay_s: float = 200e-6,
        reset: bool = True,
        alert: str | None = None,
        alert_limit: int | None = None,
        alert_latch: bool = False,
        alert_pin: int | str | None = None,
        pin_factory: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(address, int) and 0x03 <= address <= 0x77):
            raise INA226ConfigError(f"I2C address must be 0x03..0x77, got {address!r}")
        if retries < 0:
            raise INA226ConfigError(f"retries must be ≥ 0, got {retries!r}")
        self.address = address
        self.retries = int(retries)
        self.retry_delay_s = float(retry_delay_s)
        self._clock = clock
        self.transient_errors = 0  # every OSError seen and retried (or given up on)
        self._owns_bus = False
        if isinstance(bus, int | str):
            bus, self.bus_name = _open_bus(bus, address), str(bus)
            self._owns_bus = True
        else:
            self.bus_name = str(getattr(bus, "bus_number", None) or type(bus).__name__)
        self.bus = bus
        try:
            self.calibration = compute_calibration(shunt_ohms, max_current_a)
            self._pinned = (averaging, bus_conv_us, shunt_conv_us) != (None, None, None)
            self.timing = Timing(
                averaging=1 if averaging is None else averaging,
                bus_conv_us=1100 if bus_conv_us is None else bus_conv_us,
                shunt_conv_us=1100 if shunt_conv_us is None else shunt_conv_us,
                mode=parse_mode(mode),
            )
            alert_bits = 0
            if alert is not None:
                if alert not in ALERT_FUNCTIONS:
                    raise INA226ConfigError(
                        f"alert must be one of {', '.join(ALERT_FUNCTIONS)}, got {alert!r}"
                    )
                alert_bits = ALERT_FUNCTIONS[alert] | (ME_LEN if alert_latch else 0)
            if alert_pin is not None:
                if alert is not None:
                    raise INA226ConfigError(
                        "alert_pin uses ALERT for conversion-ready; it cannot be combined "
                        f"with alert={alert!r}"
                    )
                alert_bits = ME_CNVR
            if alert_limit is not None and not (0 <= alert_limit <= 0xFFFF):
                raise INA226ConfigError(f"alert_limit must be a 16-bit value, got {alert_limit}")
        except INA226ConfigError as exc:
            self.close()
            raise INA226ConfigError(str(exc), bus=self.bus_name, address=address) from None
        self._flags_t: float | None = None
        self._edge_t: float | None = None
        self._alert_dev: Any = None
        self.on_close: list[Callable[[], None]] = []  # e.g. a simulator's pin driver
        try:
            self._probe()
            if reset:
                self.write_register(Reg.CONFIG, CONFIG_RESET_BIT)
            self.write_register(Reg.CALIBRATION, self.calibration.cal)
            self._apply_timing(self.timing)
            if alert_limit is not None:
                self.write_register(Reg.ALERT_LIMIT, alert_limit)
            self.write_register(Reg.MASK_ENABLE, alert_bits)
            if alert_pin is not None:
                self._alert_dev = _alert_input(alert_pin, pin_factory, self)
            got = self.read_register(Reg.CALIBRATION)
            if got != self.calibration.cal:
                raise INA226Error(
                    f"calibration read back as 0x{got:04x}, wrote 0x{self.calibration.cal:04x}",
                    bus=self.bus_name,
                    address=address,
                )
        except BaseException:
            self.close()
            raise

    # -- low level -----------------------------------------------------------------

    def _err(self, cls: type[INA226Error], message: str) -> INA226Error:
        return cls(message, bus=self.bus_name, address=self.address)

    def _transfer(
        self,
        what: str,
        fn: Callable[[], Any],
        attempts: int | None = None,
        first_attempt: int = 1,
    ) -> Any:
        """Run one bus transaction with bounded retries on transient errnos."""
        last: OSError | None = None
        n = self.retries + 1 if attempts is None else attempts
        for attempt in range(n):
            try:
                return fn()
            except OSError as exc:
                if exc.errno not in TRANSIENT_ERRNOS:
                    raise self._err(INA226Error, f"{what} failed: {exc}") from exc
                self.transient_errors += 1
                last = exc
                if attempt < n - 1 and self.retry_delay_s > 0:
                    time.sleep(self.retry_delay_s * (attempt + first_attempt))
        total = n + first_attempt - 1
        raise self._err(INA226TransientError, f"{what} failed {total} times: {last}") from last

    def read_register(self, reg: int) -> int:
        """16-bit register, big-endian on the wire (SMBus words are little-endian: swap)."""
        try:  # fast path: no closure, no message formatting unless something fails
            raw = self.bus.read_word_data(self.address, reg)
        except OSError as exc:
            raw = self._retry_after(
                exc, f"read of register 0x{reg:02x}", self.bus.read_word_data, reg
            )
        raw = int(raw) & 0xFFFF
        return ((raw & 0xFF) << 8) | (raw >> 8)

    def _retry_after(self, exc: OSError, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """The first attempt failed with ``exc``: classify it and retry what is transient."""
        if exc.errno not in TRANSIENT_ERRNOS:
            raise self._err(INA226Error, f"{what} failed: {exc}") from exc
        self.transient_errors += 1
        if self.retries == 0:
            raise self._err(INA226TransientError, f"{what} failed 1 times: {exc}") from exc
        if self.retry_delay_s > 0:
            time.sleep(self.retry_delay_s)
        return self._transfer(
            what, lambda: fn(self.address, *args), attempts=self.retries, first_attempt=2
        )

    def write_register(self, reg: int, value: int) -> None:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"register value must be 16-bit, got {value}")
        self._transfer(
            f"write of register 0x{reg:02x}",
            lambda: self.bus.write_word_data(self.address, reg, _swap16(value)),
        )
        if reg == Reg.CONFIG or reg == Reg.MASK_ENABLE:
            self._flags_t = None  # conversion restarted / flags touched: age unknown

    def _probe(self) -> None:
        try:
            mid = self.read_register(Reg.MANUFACTURER_ID)
            did = self.read_register(Reg.DIE_ID)
        except INA226Error as exc:
            cause = exc.__cause__
            raise self._err(
                INA226NotFound, f"no device answers ({cause or exc}); check wiring and address"
            ) from exc
        if mid != MANUFACTURER_ID or (did & 0xFFF0) != (DIE_ID & 0xFFF0):
            raise self._err(
                INA226NotFound,
                f"not an INA226: manufacturer id 0x{mid:04x} (want 0x{MANUFACTURER_ID:04x}), "
                f"die id 0x{did:04x} (want 0x{DIE_ID:04x})",
            )
        self.die_revision = did & 0xF

    def _apply_timing(self, timing: Timing) -> None:
        value = encode_config(
            timing.averaging, timing.bus_conv_us, timing.shunt_conv_us, timing.mode
        )
        self.write_register(Reg.CONFIG, value)
        got = self.read_register(Reg.CONFIG)
        if got & 0x0FFF != value & 0x0FFF:
            raise self._err(INA226Error, f"config read back as 0x{got:04x}, wrote 0x{value:04x}")
        self.timing = timing
        self._cycle = timing.cycle_s
        self._triggered = timing.mode.triggered
        self._off = timing.mode in (Mode.POWER_DOWN, Mode.POWER_DOWN_ALT)
        self._flags_t: float | None = None  # last time the chip was seen without new data

    # -- public ----------------------------------------------------------------------

    def configure(
        self,
        averaging: int | None = None,
        bus_conv_us: int | None = None,
        shunt_conv_us: int | None = None,
        mode: Mode | int | str | None = None,
    ) -> Timing:
        """Change ADC timing; unspecified fields keep their value. Pins the timing."""
        t = self.timing
        new = Timing(
            averaging=t.averaging if averaging is None else averaging,
            bus_conv_us=t.bus_conv_us if bus_conv_us is None else bus_conv_us,
            shunt_conv_us=t.shunt_conv_us if shunt_conv_us is None else shunt_conv_us,
            mode=t.mode if mode is None else parse_mode(mode),
        )
        self._apply_timing(new)
        self._pinned = True
        return new

    def adapt_to_rate(self, rate_hz: float) -> Timing:
        """Fit the ADC cycle to a sampling rate unless the user pinned the timing."""
        if not self._pinned:
            self._apply_timing(timing_for_rate(rate_hz, self.timing.mode))
        return self.timing

    def flags(self) -> int:
        """Read mask/enable (this clears CVRF on the chip, as the datasheet specifies)."""
        return self.read_register(Reg.MASK_ENABLE)

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Poll conversion-ready (CVRF) until set; False on timeout."""
        if timeout_s is None:
            timeout_s = 2 * self.timing.cycle_s + 0.05
        deadline = self._clock() + timeout_s
        while True:
            if self.flags() & ME_CVRF:
                return True
            if self._clock() >= deadline:
                return False
            time.sleep(min(self.timing.cycle_s / 4, 0.001))

    def trigger(self) -> None:
        """Start one conversion in a triggered mode (rewriting config triggers, per datasheet)."""
        t = self.timing
        self.write_register(
            Reg.CONFIG, encode_config(t.averaging, t.bus_conv_us, t.shunt_conv_us, t.mode)
        )

    def set_alert(self, function: str | None, limit: int = 0, latch: bool = False) -> None:
        """Select the ALERT function (``ALERT_FUNCTIONS`` names) and its limit register value."""
        bits = 0
        if function is not None:
            if function not in ALERT_FUNCTIONS:
                raise self._err(
                    INA226ConfigError,
                    f"alert must be one of {', '.join(ALERT_FUNCTIONS)}, got {function!r}",
                )
            bits = ALERT_FUNCTIONS[function] | (ME_LEN if latch else 0)
        self.write_register(Reg.ALERT_LIMIT, limit & 0xFFFF)
        self.write_register(Reg.MASK_ENABLE, bits)

    @property
    def alert_waiter(self) -> Callable[[float], bool] | None:
        """With ``alert_pin``: blocks until ALERT signals conversion-ready (or timeout)."""
        return self.wait_alert if self._alert_dev is not None else None

    def wait_alert(self, timeout: float) -> bool:
        if self._alert_dev is None:
            raise self._err(INA226ConfigError, "no alert_pin configured")
        ok = bool(self._alert_dev.wait_for_active(timeout))
        if ok:
            self._edge_t = self._clock()  # the conversion completed just before this edge
        return ok

    def poll(self) -> PowerSample | None:
        """A sample if a conversion completed since the last look, else None (one transaction).

        This is sampling on conversion-ready: the sampler polls cheaply and reads the data
        registers only when the chip has new values, so no conversion is read twice.
        """
        if self._triggered:
            return self.read()
        flags = self.flags()
        if not flags & ME_CVRF:
            self._flags_t = self._clock()
            return None
        return self._read_data(flags)

    def read(self) -> PowerSample:
        """One sample: flags, then shunt, bus, current, power registers.

        ``fresh`` says whether a conversion completed since the previous read (CVRF);
        ``age_s`` estimates how long ago the middle of the ADC window that produced the
        values was, so a sampler can place the sample on the time axis where the energy was
        actually spent (the registers lag the load by about one conversion cycle).
        """
        if self._triggered:
            self.trigger()
            if not self.wait_ready():
                raise self._err(INA226TransientError, "triggered conversion never completed")
            self._flags_t = None
            return self._read_data(ME_CVRF)
        if self._off:
            raise self._err(INA226Error, "chip is powered down (mode power_down)")
        return self._read_data(self.flags())

    def _read_data(self, flags: int) -> PowerSample:
        shunt = self.read_register(Reg.SHUNT_VOLTAGE)
        bus = self.read_register(Reg.BUS_VOLTAGE) & 0x7FFF
        current = self.read_register(Reg.CURRENT)
        power = self.read_register(Reg.POWER)
        now = self._clock()
        if shunt & 0x8000:
            shunt -= 0x10000
        if current & 0x8000:
            current -= 0x10000
        cycle = self._cycle
        # The conversion completed after the chip was last seen without one (CVRF clear)
        # and at most one cycle ago: place it in the middle of that interval.
        seen_clear = self._flags_t
        self._flags_t = now
        since = cycle if seen_clear is None else min(cycle, max(0.0, now - seen_clear))
        if self._edge_t is not None:  # woken by the ALERT edge: completion time is known
            since = 2 * min(cycle, max(0.0, now - self._edge_t))
            self._edge_t = None
        c = self.calibration
        power_w = power * c.power_lsb_w
        return PowerSample(
            bus_voltage_v=bus * BUS_LSB_V,
            shunt_voltage_v=shunt * SHUNT_LSB_V,
            current_a=current * c.current_lsb_a,
            power_w=-power_w if current < 0 else power_w,
            timestamp=now,
            fresh=bool(flags & ME_CVRF),
            overflow=bool(flags & ME_OVF),
            age_s=cycle / 2 + since / 2,
        )

    def close(self) -> None:
        for fn in getattr(self, "on_close", ()):
            fn()
        if hasattr(self, "on_close"):
            self.on_close.clear()
        dev = getattr(self, "_alert_dev", None)
        if dev is not None:
            self._alert_dev = None
            dev.close()
        if getattr(self, "_owns_bus", False) and getattr(self, "bus", None) is not None:
            try:
                self.bus.close()
            finally:
                self._owns_bus = False

    def __enter__(self) -> INA226:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.calibration
        return (
            f"INA226(bus={self.bus_name}, address=0x{self.address:02x}, "
            f"shunt_ohms={c.shunt_ohms:g}, cal={c.cal}, timing={self.timing})"
        )


def _alert_input(pin: int | str, pin_factory: Any, chip: INA226) -> Any:
    """The ALERT line as a gpiozero input: open drain, active low, so pulled up."""
    try:
        from gpiozero import DigitalInputDevice
    except ImportError as exc:  # pragma: no cover - gpiozero is in the device extra
        raise chip._err(INA226ConfigError, "alert_pin needs gpiozero") from exc
    try:
        return DigitalInputDevice(pin, pull_up=True, pin_factory=pin_factory)
    except Exception as exc:  # gpiozero raises its own hierarchy (BadPinFactory, PinInvalid…)
        raise chip._err(INA226Error, f"cannot use GPIO {pin!r} for ALERT: {exc}") from exc


def _open_bus(bus: int | str, address: int) -> Any:
    """Open a real ``smbus2.SMBus`` with an error that says what is missing."""
    path = f"/dev/i2c-{bus}" if isinstance(bus, int) else str(bus)
    if not os.path.exists(path):
        raise INA226NotFound(
            f"{path} does not exist (enable I2C, e.g. dtparam=i2c_arm=on on a Raspberry Pi, "
            "or use the simulator)",
            bus=bus,
            address=address,
        )
    try:
        from smbus2 import SMBus
    except ImportError as exc:  # pragma: no cover - smbus2 is in the device extra
        raise INA226Error("smbus2 is not installed", bus=bus, address=address) from exc
    try:
        return SMBus(bus)
    except PermissionError as exc:
        raise INA226Error(
            f"permission denied opening {path} (add the user to the i2c group)",
            bus=bus,
            address=address,
        ) from exc
    except OSError as exc:
        raise INA226NotFound(f"cannot open {path}: {exc}", bus=bus, address=address) from exc
