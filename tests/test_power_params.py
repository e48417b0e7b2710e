"""Power monitor parameters are declared per kind (hardware.monitor's Sections, wire.schema):
a wrong type or bound is refused with the parameter's name before any driver or simulator
runs, and only the keys a caller gave reach the driver (the drivers keep their defaults)."""

from __future__ import annotations

import pytest

from hardware.monitor import Ina226Params, SimParams, open_power_monitor


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("sim", {"idle_w": "2"}, "power monitor 'sim': idle_w must be a number, got '2'"),
        ("sim", {"shunt_ohms": -1}, "power monitor 'sim': shunt_ohms must be > 0, got -1"),
        ("sim", {"seed": 1.5}, "power monitor 'sim': seed must be an integer, got 1.5"),
        ("sim", {"noise_w": float("nan")}, "power monitor 'sim': noise_w must be a finite number"),
        ("sim", {"alert_latch": 1}, "power monitor 'sim': alert_latch must be true or false"),
        ("ina226", {"retries": -1}, "power monitor 'ina226': retries must be >= 0, got -1"),
        ("ina226", {"idle_w": 1.0}, "power monitor 'ina226': unknown key 'idle_w'"),
        ("hwmon", {"name": 3}, "power monitor 'hwmon': name must be a string, got 3"),
        ("none", {"speed": 1}, "power monitor 'none': unknown key 'speed' (allowed: )"),
    ],
)
def test_bad_parameters_are_named_before_any_driver_runs(kind, params, message) -> None:
    with pytest.raises(ValueError) as info:
        open_power_monitor(kind, **params)
    assert str(info.value).startswith(message)


def test_given_parameters_reach_the_simulated_driver_and_the_rest_keep_driver_defaults() -> None:
    reader = open_power_monitor("sim", shunt_ohms=0.05, averaging=16, noise_w=0)
    try:
        assert reader.calibration.shunt_ohms == 0.05 and reader.timing.averaging == 16
        assert reader.address == 0x40 and reader.retries == 3  # the driver's own defaults
    finally:
        reader.close()


def test_sim_takes_the_chip_settings_but_not_the_real_bus() -> None:
    chip = set(Ina226Params.__struct_fields__) - {"bus", "retries"}
    assert chip <= set(SimParams.__struct_fields__)
    assert not {"bus", "retries"} & set(SimParams.__struct_fields__)
