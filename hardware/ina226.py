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
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from hardware.ina226_errors import (
    INA226ConfigError,
    INA226Error,
    INA226NotFound,
    INA226TransientError,
)
from hardware.ina226_regs import (
    ALERT_FUNCTIONS,
    AVERAGING,
    BUS_LSB_V,
    CONFIG_RESET_BIT,
    CONVERSION_TIMES_US,
    DIE_ID,
    MANUFACTURER_ID,
    ME_CNVR,
    ME_CVRF,
    ME_LEN,
    ME_OVF,
    SHUNT_FULL_SCALE_V,
    SHUNT_LSB_V,
    Calibration,
    Mode,
    Reg,
    Timing,
    compute_calibration,
    decode_config,
    encode_config,
    parse_mode,
    timing_for_rate,
)
from hardware.powersample import PowerSample

# The register model and the errors are part of the driver's vocabulary (callers pass Mode,
# catch INA226Error, ...), so they are re-exported here; they live in their own modules so
# the simulator and the hwmon backend can use them without importing this driver.
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

# errno values an I2C adapter reports for a glitch worth retrying (NACK, bus timeout, ...).
TRANSIENT_ERRNOS = frozenset(
    {errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT, errno.EAGAIN, errno.EBUSY, errno.ENXIO}
)


class SMBusLike(Protocol):
    def read_word_data(self, i2c_addr: int, register: int) -> int: ...
    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None: ...


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
        if isinstance(bus, (int, str)):
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
