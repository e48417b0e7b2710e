"""INA2xx reader through the Linux ``ina2xx`` hwmon driver's sysfs files.

Why: on boards whose device tree binds the kernel driver to the chip, ``/dev/i2c-N`` access
to that address is refused (the kernel owns it). The kernel then exposes the same
measurements as text files; this backend reads them behind the same ``read() -> PowerSample``
interface as :class:`hardware.ina226.INA226`.

Files used (Documentation/hwmon/ina2xx.rst): ``name``, ``in0_input`` (shunt, mV),
``in1_input`` (bus, mV), ``curr1_input`` (mA), ``power1_input`` (µW, unsigned) and, when
present, ``update_interval`` (ms) to estimate how old a reading is.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from pathlib import Path

from hardware.ina226_errors import INA226Error, INA226NotFound, INA226TransientError
from hardware.powersample import PowerSample

__all__ = ["DEFAULT_SYSFS_ROOT", "HwmonINA2xx", "find_hwmon"]

DEFAULT_SYSFS_ROOT = Path("/sys/class/hwmon")
SUPPORTED = ("ina209", "ina219", "ina220", "ina226", "ina230", "ina231", "ina238", "ina260")
_REQUIRED = ("in0_input", "in1_input", "curr1_input", "power1_input")
_TRANSIENT = frozenset({errno.EIO, errno.EREMOTEIO, errno.ETIMEDOUT, errno.EAGAIN, errno.ENXIO})


def _device_id(hwmon_dir: Path) -> str:
    """The I2C device name (e.g. "1-0040") the hwmon directory belongs to, if known."""
    dev = hwmon_dir / "device"
    try:
        return dev.resolve().name if dev.exists() else ""
    except OSError:
        return ""


def find_hwmon(name: str, sysfs_root: Path | str = DEFAULT_SYSFS_ROOT) -> Path:
    """Find the hwmon directory for ``name`` ("ina226") or ``name@device`` ("ina226@1-0040")."""
    root = Path(sysfs_root)
    chip, _, device = name.partition("@")
    found: list[tuple[Path, str]] = []
    for d in sorted(root.glob("hwmon*")) if root.is_dir() else []:
        try:
            n = (d / "name").read_text().strip()
        except OSError:
            continue
        if n == chip and (not device or _device_id(d) == device):
            found.append((d, _device_id(d)))
    if not found:
        raise INA226NotFound(
            f"no hwmon device named {name!r} under {root} (is the ina2xx kernel driver bound? "
            "check the device tree overlay)"
        )
    if len(found) > 1:
        listing = ", ".join(f"{d.name}({dev or '?'})" for d, dev in found)
        raise INA226NotFound(
            f"several hwmon devices named {chip!r} under {root}: {listing}; "
            f"pick one with {chip}@<bus>-<addr> or a path"
        )
    return found[0][0]


class HwmonINA2xx:
    """Reads one ina2xx hwmon directory. ``path_or_name``: a directory, or a name for
    :func:`find_hwmon`."""

    def __init__(
        self,
        path_or_name: str | Path,
        *,
        sysfs_root: Path | str = DEFAULT_SYSFS_ROOT,
        retries: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        p = Path(path_or_name)
        if p.is_dir():
            self.path = p
        elif "/" in str(path_or_name):
            raise INA226NotFound(f"hwmon directory {path_or_name} does not exist")
        else:
            self.path = find_hwmon(str(path_or_name), sysfs_root)
        missing = [f for f in _REQUIRED if not (self.path / f).exists()]
        if missing:
            raise INA226NotFound(
                f"{self.path} is not an ina2xx hwmon device (missing {', '.join(missing)})"
            )
        try:
            self.chip = (self.path / "name").read_text().strip()
        except OSError:
            self.chip = "?"
        self.retries = retries
        self.transient_errors = 0
        self._clock = clock
        self._files = {f: self.path / f for f in _REQUIRED}
        interval = self.path / "update_interval"
        self.update_interval_s = 0.0
        if interval.exists():
            try:
                self.update_interval_s = float(interval.read_text().strip()) / 1000.0
            except (OSError, ValueError):
                self.update_interval_s = 0.0

    def _read_value(self, name: str) -> float:
        last: OSError | None = None
        for _ in range(self.retries + 1):
            try:
                text = self._files[name].read_text().strip()
            except OSError as exc:
                if exc.errno not in _TRANSIENT:
                    raise INA226Error(f"{self.path}/{name}: {exc}") from exc
                self.transient_errors += 1
                last = exc
                continue
            try:
                return float(text)
            except ValueError:
                raise INA226Error(f"{self.path}/{name}: not a number: {text!r}") from None
        raise INA226TransientError(
            f"{self.path}/{name}: failed {self.retries + 1} times: {last}"
        ) from last

    def read(self) -> PowerSample:
        shunt_mv = self._read_value("in0_input")
        bus_mv = self._read_value("in1_input")
        curr_ma = self._read_value("curr1_input")
        power_uw = self._read_value("power1_input")
        now = self._clock()
        power = power_uw * 1e-6
        return PowerSample(
            bus_voltage_v=bus_mv * 1e-3,
            shunt_voltage_v=shunt_mv * 1e-3,
            current_a=curr_ma * 1e-3,
            power_w=-power if curr_ma < 0 else power,
            timestamp=now,
            # the kernel returns the last completed conversion: on average one cycle old
            age_s=self.update_interval_s,
        )

    def __repr__(self) -> str:
        return f"HwmonINA2xx({str(self.path)!r}, chip={self.chip!r})"
