"""Build the power monitor a config names: "ina226" | "hwmon" | "sim" | "none".

Why apart from the sampler (:mod:`hardware.power`): the sampler only needs something with
``read() -> PowerSample``; choosing and wiring a backend (a real bus, the kernel's hwmon files,
the register simulator on a fake bus with its ALERT pin) is a separate job that needs all the
backends, and the sampler should not depend on any of them.
"""

from __future__ import annotations

from typing import Any

from hardware.hwmon import HwmonINA2xx
from hardware.ina226 import INA226
from hardware.powersample import PowerReader
from hardware.sim import FakeSMBus, SimulatedINA226, SimulatedLoad

__all__ = ["MONITOR_KINDS", "open_power_monitor"]

MONITOR_KINDS = ("ina226", "hwmon", "sim", "none")

_INA226_KEYS = {
    "bus",
    "address",
    "shunt_ohms",
    "max_current_a",
    "averaging",
    "bus_conv_us",
    "shunt_conv_us",
    "mode",
    "retries",
    "alert",
    "alert_limit",
    "alert_latch",
    "alert_pin",
    "pin_factory",
}
_SIM_LOAD_KEYS = {
    "idle_w",
    "busy_w",
    "noise_w",
    "supply_v",
    "source_ohms",
    "noise_cell_s",
    "seed",
    "radio",  # BottleNet Table 3 link type (3G | 4G | WiFi): transmit power on the rail
}
_SIM_KEYS = (
    (_INA226_KEYS - {"bus", "retries"})
    | _SIM_LOAD_KEYS
    | {
        "load",
        "sim_shunt_ohms",
        "chip_clock",  # the chip's and driver's clock, e.g. hardware.sim.ReplayClock (programmatic)
    }
)
_HWMON_KEYS = {"path_or_name", "path", "name", "sysfs_root"}


def _check_keys(kind: str, params: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"unknown power monitor parameter {unknown[0]!r} for kind {kind!r} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def open_power_monitor(kind: str, **params: Any) -> PowerReader | None:
    """Build the reader a config asks for: "ina226" | "hwmon" | "sim" | "none".

    Unknown parameter names raise ``ValueError`` naming the key. For "sim" the reader is the
    real :class:`~hardware.ina226.INA226` driver talking to a simulated chip on a
    :class:`~hardware.sim.FakeSMBus`; get its load (to drive busy/idle) with
    :func:`hardware.sim.simulated_load_of`.
    """
    if kind == "none":
        _check_keys(kind, params, set())
        return None
    if kind == "ina226":
        _check_keys(kind, params, _INA226_KEYS)
        p = dict(params)
        bus = p.pop("bus", 1)
        return INA226(bus, **p)
    if kind == "hwmon":
        _check_keys(kind, params, _HWMON_KEYS)
        p = dict(params)
        target = p.pop("path_or_name", None) or p.pop("path", None) or p.pop("name", None)
        return HwmonINA2xx(target or "ina226", **p)
    if kind == "sim":
        _check_keys(kind, params, _SIM_KEYS)
        p = dict(params)
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
    raise ValueError(f"unknown power monitor kind {kind!r} (expected one of {MONITOR_KINDS})")
