"""The hwmon backend against a sysfs tree laid out like the kernel's ina2xx driver's."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hardware.hwmon import HwmonINA2xx, find_hwmon
from hardware.ina226 import INA226Error, INA226NotFound
from hardware.monitor import open_power_monitor


def make_hwmon(root: Path, n: int, name: str, device: str, values: dict[str, str]) -> Path:
    """/sys/class/hwmon/hwmonN with a ``device`` link to /sys/bus/i2c/devices/<device>."""
    d = root / "class" / f"hwmon{n}"
    d.mkdir(parents=True)
    dev = root / "devices" / device
    dev.mkdir(parents=True, exist_ok=True)
    os.symlink(dev, d / "device")
    (d / "name").write_text(name + "\n")
    for k, v in values.items():
        (d / k).write_text(v + "\n")
    return d


INA_VALUES = {
    "in0_input": "29",  # shunt mV (the kernel reports integer mV for the shunt)
    "in1_input": "5035",  # bus mV
    "curr1_input": "-295",  # mA (reverse current)
    "power1_input": "1485325",  # µW, unsigned
    "update_interval": "2",  # ms
}


def test_reads_and_converts_units(tmp_path: Path) -> None:
    d = make_hwmon(tmp_path, 0, "ina226", "1-0040", INA_VALUES)
    r = HwmonINA2xx(d)
    s = r.read()
    assert s.shunt_voltage_v == pytest.approx(0.029)
    assert s.bus_voltage_v == pytest.approx(5.035)
    assert s.current_a == pytest.approx(-0.295)
    assert s.power_w == pytest.approx(-1.485325)  # sign follows the current
    assert s.age_s == pytest.approx(0.002)
    (d / "curr1_input").write_text("300\n")
    assert r.read().power_w == pytest.approx(1.485325)


def test_find_by_name_and_device(tmp_path: Path) -> None:
    make_hwmon(tmp_path, 0, "cpu_thermal", "thermal", {})
    a = make_hwmon(tmp_path, 1, "ina226", "1-0040", INA_VALUES)
    b = make_hwmon(tmp_path, 2, "ina226", "1-0041", INA_VALUES)
    root = tmp_path / "class"
    with pytest.raises(INA226NotFound, match="several hwmon devices named 'ina226'"):
        find_hwmon("ina226", root)
    assert find_hwmon("ina226@1-0041", root) == b
    assert HwmonINA2xx("ina226@1-0040", sysfs_root=root).path == a
    r = open_power_monitor("hwmon", path_or_name="ina226@1-0040", sysfs_root=root)
    assert r.read().bus_voltage_v == pytest.approx(5.035)


def test_missing_device_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(INA226NotFound, match="no hwmon device named 'ina226'"):
        HwmonINA2xx("ina226", sysfs_root=tmp_path)
    d = make_hwmon(tmp_path, 0, "ina226", "1-0040", {"in0_input": "1"})
    with pytest.raises(INA226NotFound, match="missing in1_input"):
        HwmonINA2xx(d)
    with pytest.raises(INA226NotFound, match="does not exist"):
        HwmonINA2xx(tmp_path / "nope" / "hwmon9")
    d2 = make_hwmon(tmp_path, 1, "ina219", "1-0044", {**INA_VALUES, "in1_input": "garbage"})
    with pytest.raises(INA226Error, match="not a number: 'garbage'"):
        HwmonINA2xx(d2).read()


def test_power_log_records_from_hwmon(tmp_path: Path) -> None:
    from hardware.powerlog import read_power_log
    from hardware.powerlog_cli import main

    d = make_hwmon(tmp_path, 0, "ina226", "1-0040", INA_VALUES)
    out = tmp_path / "hw.csv"
    assert (
        main(["record", "--hwmon", str(d), "--out", str(out), "--duration", "0.3", "--rate", "50"])
        == 0
    )
    log = read_power_log(out)
    assert len(log) >= 5
    assert np.allclose(log.power_w, -1.485325) and np.allclose(log.bus_v, 5.035)
    assert log.metas[0]["source"]["kind"] == "hwmon"
    # --sim with --hwmon is a usage error (wire.exitcodes.USAGE), not a run-time failure
    assert main(["record", "--sim", "--hwmon", str(d), "--out", str(out)]) == 2
