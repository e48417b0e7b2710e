"""Build the power monitor a config names: "ina226" | "hwmon" | "sim" | "none".

Why apart from the sampler (:mod:`hardware.power`): the sampler only needs something with
``read() -> PowerSample``; choosing and wiring a backend (a real bus, the kernel's hwmon files,
the register simulator on a fake bus with its ALERT pin) is a separate job that needs all the
backends, and the sampler should not depend on any of them.
"""

from typing import Annotated, Any, Optional, Union

from hardware.hwmon import HwmonINA2xx
from hardware.ina226 import INA226
from hardware.powersample import PowerReader
from hardware.sim import FakeSMBus, SimulatedINA226, SimulatedLoad
from wire.schema import Meta, Section, Violation, convert

__all__ = ["MONITOR_KINDS", "HwmonParams", "Ina226Params", "SimParams", "open_power_monitor"]

MONITOR_KINDS = ("ina226", "hwmon", "sim", "none")

# The parameters each kind takes, declared once (wire.schema): unknown keys and wrong types are
# refused with the key's name before any driver runs. ``None`` means "the driver's default"
# (the drivers own their defaults; only the keys a caller gave are passed on). ``Any`` fields
# take objects only code can pass (a bus, a pin factory, a load model, a clock).
_Positive = Annotated[float, Meta(gt=0)]
_NonNegative = Annotated[float, Meta(ge=0)]


class _ChipParams(Section):
    """The INA226 driver's settings, shared by the real chip and the simulated one."""

    address: Optional[int] = None
    shunt_ohms: Optional[_Positive] = None
    max_current_a: Optional[_Positive] = None
    averaging: Optional[int] = None
    bus_conv_us: Optional[int] = None
    shunt_conv_us: Optional[int] = None
    mode: Any = None  # "continuous" | "triggered" | a Mode
    alert: Optional[str] = None
    alert_limit: Optional[int] = None
    alert_latch: Optional[bool] = None
    alert_pin: Optional[Union[int, str]] = None
    pin_factory: Any = None


class Ina226Params(_ChipParams):
    """``[power.params]`` for ``monitor = "ina226"``."""

    bus: Any = None  # I2C bus number (default 1) or an SMBus-like object
    retries: Optional[Annotated[int, Meta(ge=0)]] = None


class SimParams(_ChipParams):
    """``[power.params]`` for ``monitor = "sim"``: the driver on a simulated chip and load."""

    idle_w: Optional[_Positive] = None
    busy_w: Optional[_Positive] = None
    noise_w: Optional[_NonNegative] = None
    supply_v: Optional[_Positive] = None
    source_ohms: Optional[_NonNegative] = None
    noise_cell_s: Optional[_Positive] = None
    seed: Optional[int] = None
    radio: Any = None  # BottleNet Table 3 link type (3G | 4G | WiFi): transmit power on the rail
    load: Any = None  # a SimulatedLoad (instead of the load parameters above)
    sim_shunt_ohms: Optional[_Positive] = None
    chip_clock: Any = None  # the chip's and driver's clock, e.g. hardware.sim.ReplayClock


class HwmonParams(Section):
    """``[power.params]`` for ``monitor = "hwmon"``."""

    path_or_name: Optional[str] = None
    path: Optional[str] = None
    name: Optional[str] = None
    sysfs_root: Any = None  # a path (str or Path)


class NoParams(Section):
    """``monitor = "none"`` takes no parameters."""


_PARAMS: dict[str, type[Section]] = {
    "ina226": Ina226Params,
    "hwmon": HwmonParams,
    "sim": SimParams,
    "none": NoParams,
}
_SIM_LOAD_KEYS = frozenset(SimParams.__struct_fields__) - frozenset(
    (*_ChipParams.__struct_fields__, "load", "sim_shunt_ohms", "chip_clock")
)


def _checked(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as given, once their keys and types match the kind's declaration."""

    def refuse(problem: Violation) -> Exception:
        return ValueError(f"power monitor {kind!r}: {problem.message}")

    convert(params, _PARAMS[kind], on_error=refuse)
    return dict(params)


def open_power_monitor(kind: str, **params: Any) -> Optional[PowerReader]:
    """Build the reader a config asks for: "ina226" | "hwmon" | "sim" | "none".

    Unknown parameter names raise ``ValueError`` naming the key. For "sim" the reader is the
    real :class:`~hardware.ina226.INA226` driver talking to a simulated chip on a
    :class:`~hardware.sim.FakeSMBus`; get its load (to drive busy/idle) with
    :func:`hardware.sim.simulated_load_of`.
    """
    if kind not in _PARAMS:
        raise ValueError(f"unknown power monitor kind {kind!r} (expected one of {MONITOR_KINDS})")
    p = _checked(kind, params)
    if kind == "none":
        return None
    if kind == "ina226":
        bus = p.pop("bus", 1)
        return INA226(bus, **p)
    if kind == "hwmon":
        target = p.pop("path_or_name", None) or p.pop("path", None) or p.pop("name", None)
        return HwmonINA2xx(target or "ina226", **p)
    if kind == "sim":
        load = p.pop("load", None)
        load_kw = {k: p.pop(k) for k in list(p) if k in _SIM_LOAD_KEYS}
        if load is None:
            load = SimulatedLoad(**load_kw)
        elif load_kw:
            raise ValueError(f"pass either load= or load parameters, not both ({sorted(load_kw)})")
        address = p.get("address", 0x40)
        shunt = p.get("shunt_ohms", 0.1)
        chip_clock = p.pop("chip_clock", None)
        if chip_clock is not None and (not callable(chip_clock) or p.get("alert_pin") is not None):
            raise ValueError("chip_clock must be a callable clock, and cannot drive an ALERT pin")
        chip = SimulatedINA226(load, shunt_ohms=p.pop("sim_shunt_ohms", shunt), clock=chip_clock)
        bus = FakeSMBus(bus_number="sim")
        bus.attach(address, chip)
        if p.get("alert_pin") is None:
            return INA226(bus, **p) if chip_clock is None else INA226(bus, clock=chip_clock, **p)
        # ALERT wired to a GPIO: a gpiozero mock pin driven by the chip in real time
        from gpiozero.pins.mock import MockFactory

        from hardware.sim.alert import AlertPinDriver

        if p.get("pin_factory") not in (None, "mock"):
            raise ValueError("the simulator's ALERT pin needs pin_factory 'mock' (or none)")
        factory = MockFactory()
        p["pin_factory"] = factory
        pin_driver = AlertPinDriver(chip, factory.pin(p["alert_pin"])).start()
        try:
            drv = INA226(bus, **p)
        except BaseException:
            pin_driver.stop()
            raise
        drv.on_close.append(pin_driver.stop)
        return drv
    raise AssertionError(kind)  # every kind in _PARAMS is handled above
