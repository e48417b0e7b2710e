"""``device.toml``: the daemon's whole configuration, validated once at start.

Why strict: the daemon runs unattended for months; a typo in a key that silently falls back to
a default is a bug found weeks later. Every unknown key is an error naming it, every bad value
an error naming its dotted path (``server.window``), raised as :class:`ConfigError`.

Relative paths (models, manifests, metrics, camera folders) resolve against the config file's
directory, so a config dir can be moved as a unit.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CAMERA_SOURCES = ("synthetic", "folder", "video", "opencv", "picamera2")
POWER_KINDS = ("ina226", "hwmon", "sim", "none")
OUTAGE_MODES = ("drop", "buffer")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Camera params that name files; resolved against the config directory.
_CAMERA_PATH_PARAMS = ("path", "root", "folder", "file")


class ConfigError(ValueError):
    """A bad config file; the message names the offending key."""


@dataclass(frozen=True)
class DeviceSection:
    name: str = "splitfit-device"
    max_frames: int = 0  # 0: run until stopped
    fps_limit: float = 0.0  # 0: as fast as the pipeline goes
    startup_timeout_s: float = 30.0  # READY=1 at the latest after this
    drain_timeout_s: float = 2.0  # SIGTERM: wait this long for in-flight replies
    stall_timeout_s: float = 10.0  # no frame through the pipeline this long -> stop WATCHDOG=1
    watchdog_interval_s: float = 5.0  # used when systemd gives no WATCHDOG_USEC
    summary_path: Path | None = None  # run summary JSON at exit


@dataclass(frozen=True)
class CameraSection:
    source: str = "synthetic"
    params: dict[str, Any] = field(default_factory=dict)
    frame_timeout_s: float = 1.0
    retry_min_s: float = 0.5
    retry_max_s: float = 10.0


@dataclass(frozen=True)
class HeadSection:
    name: str
    model: Path
    manifest: Path
    num_threads: int = 1
    tail_ms: float | None = None  # server time of this split's tail when idle (policy input)


@dataclass(frozen=True)
class ServerSection:
    endpoints: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    window: int = 4
    reply_timeout_s: float = 5.0
    hello_timeout_s: float = 1.0
    heartbeat_s: float = 1.0
    heartbeat_misses: int = 3
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    outage: str = "drop"
    outage_buffer: int = 16
    token_id: str | None = None
    max_payload: int = 1 << 20


@dataclass(frozen=True)
class CodecSection:
    name: str | None = None  # None: the head manifest's default
    bits: int | None = None
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class PowerSection:
    monitor: str = "none"
    rate_hz: float = 500.0
    capacity: int = 65536
    params: dict[str, Any] = field(default_factory=dict)
    log_path: Path | None = None  # crash-safe power log (hardware.powerlog CSV), optional


@dataclass(frozen=True)
class GpioSection:
    status_led: int | str | None = None
    pin_factory: str | None = None  # "mock" for gpiozero's MockFactory; None: gpiozero default


@dataclass(frozen=True)
class LoggingSection:
    level: str = "info"
    summary_interval_s: float = 10.0


@dataclass(frozen=True)
class MetricsSection:
    path: Path | None = None
    max_bytes: int = 10_000_000
    backups: int = 3


@dataclass(frozen=True)
class PolicySection:
    switching: bool = True
    hysteresis: float = 0.15  # switch only when >= 15 % better
    min_dwell_s: float = 5.0  # and not more often than this
    bandwidth_mbps: float = 10.0  # initial link estimate before replies refine it


@dataclass(frozen=True)
class DeviceConfig:
    path: Path | None
    device: DeviceSection
    camera: CameraSection
    heads: tuple[HeadSection, ...]
    server: ServerSection
    codec: CodecSection
    power: PowerSection
    gpio: GpioSection
    logging: LoggingSection
    metrics: MetricsSection
    policy: PolicySection


# --- validation helpers ---------------------------------------------------------------------


class _Table:
    """Reads keys from one TOML table, remembering which were used; leftovers are errors."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where or 'config'}: expected a table, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        kinds_t = kinds if isinstance(kinds, tuple) else (kinds,)
        # TOML ints are acceptable where floats are expected; bools are never numbers.
        if float in kinds_t and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds_t:
            raise ConfigError(f"{self.key(name)}: expected {_names(kinds_t)}, got a boolean")
        if not isinstance(value, kinds_t):
            raise ConfigError(
                f"{self.key(name)}: expected {_names(kinds_t)}, got {type(value).__name__}"
            )
        return value

    def positive(self, name: str, kinds: type | tuple[type, ...], default: Any, *, zero_ok=False):
        value = self.get(name, kinds, default)
        if value is not None and (value < 0 or (value == 0 and not zero_ok)):
            raise ConfigError(f"{self.key(name)}: must be {'>= 0' if zero_ok else '> 0'}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise ConfigError(f"{self.key(name)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def table(self, name: str) -> _Table:
        return _Table(self.get(name, dict, {}), self.key(name))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"unknown key {self.key(unknown[0])!r}")


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(
        {
            int: "integer",
            float: "number",
            str: "string",
            bool: "boolean",
            dict: "table",
            list: "array",
        }.get(k, k.__name__)
        for k in kinds
    )


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


# --- sections --------------------------------------------------------------------------------


def _device(t: _Table, base: Path) -> DeviceSection:
    summary = t.get("summary_path", str, None)
    s = DeviceSection(
        name=t.get("name", str, DeviceSection.name),
        max_frames=t.positive("max_frames", int, 0, zero_ok=True),
        fps_limit=t.positive("fps_limit", float, 0.0, zero_ok=True),
        startup_timeout_s=t.positive("startup_timeout_s", float, DeviceSection.startup_timeout_s),
        drain_timeout_s=t.positive(
            "drain_timeout_s", float, DeviceSection.drain_timeout_s, zero_ok=True
        ),
        stall_timeout_s=t.positive("stall_timeout_s", float, DeviceSection.stall_timeout_s),
        watchdog_interval_s=t.positive(
            "watchdog_interval_s", float, DeviceSection.watchdog_interval_s
        ),
        summary_path=_resolve(base, summary) if summary else None,
    )
    t.finish()
    return s


def _camera(t: _Table, base: Path) -> CameraSection:
    source = t.choice("source", CAMERA_SOURCES, "synthetic")
    params = dict(t.get("params", dict, {}))
    for k in _CAMERA_PATH_PARAMS:
        if isinstance(params.get(k), str):
            params[k] = str(_resolve(base, params[k]))
    s = CameraSection(
        source=source,
        params=params,
        frame_timeout_s=t.positive("frame_timeout_s", float, 1.0),
        retry_min_s=t.positive("retry_min_s", float, 0.5),
        retry_max_s=t.positive("retry_max_s", float, 10.0),
    )
    if s.retry_max_s < s.retry_min_s:
        raise ConfigError(f"{t.key('retry_max_s')}: must be >= camera.retry_min_s")
    t.finish()
    return s


def _heads(raw: Any, base: Path) -> tuple[HeadSection, ...]:
    if raw is None:
        raise ConfigError("missing key 'heads' (at least one [[heads]] with model = ...)")
    if isinstance(raw, dict):  # a single [heads] table is accepted too
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError("heads: expected an array of tables [[heads]] with at least one entry")
    heads: list[HeadSection] = []
    for i, item in enumerate(raw):
        t = _Table(item, f"heads[{i}]")
        model = t.get("model", str, None)
        if model is None:
            raise ConfigError(f"missing key {t.key('model')!r}")
        model_path = _resolve(base, model)
        manifest = t.get("manifest", str, None)
        manifest_path = _resolve(base, manifest) if manifest else model_path.with_suffix(".json")
        name = t.get("name", str, model_path.stem if len(raw) == 1 else f"head{i}")
        heads.append(
            HeadSection(
                name=name,
                model=model_path,
                manifest=manifest_path,
                num_threads=t.positive("num_threads", int, 1),
                tail_ms=t.positive("tail_ms", float, None, zero_ok=True),
            )
        )
        t.finish()
    names = [h.name for h in heads]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"heads: duplicate name {sorted(dup)[0]!r}")
    return tuple(heads)


def _server(t: _Table) -> ServerSection:
    endpoints = t.get("endpoints", (list, str), list(ServerSection.endpoints))
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    if not endpoints:
        raise ConfigError(f"{t.key('endpoints')}: at least one endpoint is needed")
    for e in endpoints:
        if not isinstance(e, str) or "://" not in e:
            raise ConfigError(
                f"{t.key('endpoints')}: {e!r} is not a ZeroMQ endpoint like tcp://host:port"
            )
    s = ServerSection(
        endpoints=tuple(endpoints),
        window=t.positive("window", int, 4),
        reply_timeout_s=t.positive("reply_timeout_s", float, 5.0),
        hello_timeout_s=t.positive("hello_timeout_s", float, 1.0),
        heartbeat_s=t.positive("heartbeat_s", float, 1.0),
        heartbeat_misses=t.positive("heartbeat_misses", int, 3),
        reconnect_min_s=t.positive("reconnect_min_s", float, 0.1),
        reconnect_max_s=t.positive("reconnect_max_s", float, 5.0),
        outage=t.choice("outage", OUTAGE_MODES, "drop"),
        outage_buffer=t.positive("outage_buffer", int, 16),
        token_id=t.get("token_id", str, None),
        max_payload=t.positive("max_payload", int, 1 << 20),
    )
    if s.reconnect_max_s < s.reconnect_min_s:
        raise ConfigError(f"{t.key('reconnect_max_s')}: must be >= server.reconnect_min_s")
    t.finish()
    return s


def _codec(t: _Table) -> CodecSection:
    bits = t.get("bits", int, None)
    if bits is not None and not 1 <= bits <= 8:
        raise ConfigError(f"{t.key('bits')}: must be 1..8")
    name = t.get("name", str, None)
    if name is not None:
        known = _codec_names()
        if known and name not in known:
            raise ConfigError(f"{t.key('name')}: {name!r} is not one of {', '.join(known)}")
    s = CodecSection(name=name, bits=bits, params=t.get("params", dict, None))
    t.finish()
    return s


def _codec_names() -> tuple[str, ...]:
    try:
        from wire.codecs import CODEC_NAMES
    except ImportError:  # wire not installed yet: the codec constructor validates later
        return ()
    return tuple(CODEC_NAMES)


def _power(t: _Table, base: Path) -> PowerSection:
    log_path = t.get("log_path", str, None)
    s = PowerSection(
        monitor=t.choice("monitor", POWER_KINDS, "none"),
        rate_hz=t.positive("rate_hz", float, 500.0),
        capacity=t.positive("capacity", int, 65536),
        params=dict(t.get("params", dict, {})),
        log_path=_resolve(base, log_path) if log_path else None,
    )
    t.finish()
    return s


def _gpio(t: _Table) -> GpioSection:
    s = GpioSection(
        status_led=t.get("status_led", (int, str), None),
        pin_factory=t.choice("pin_factory", ("mock", "default"), "default"),
    )
    if s.pin_factory == "default":
        s = GpioSection(status_led=s.status_led, pin_factory=None)
    t.finish()
    return s


def _logging(t: _Table) -> LoggingSection:
    s = LoggingSection(
        level=t.choice("level", LOG_LEVELS, "info"),
        summary_interval_s=t.positive("summary_interval_s", float, 10.0),
    )
    t.finish()
    return s


def _metrics(t: _Table, base: Path) -> MetricsSection:
    path = t.get("path", str, None)
    s = MetricsSection(
        path=_resolve(base, path) if path else None,
        max_bytes=t.positive("max_bytes", int, 10_000_000),
        backups=t.positive("backups", int, 3, zero_ok=True),
    )
    t.finish()
    return s


def _policy(t: _Table) -> PolicySection:
    s = PolicySection(
        switching=t.get("switching", bool, True),
        hysteresis=t.positive("hysteresis", float, 0.15, zero_ok=True),
        min_dwell_s=t.positive("min_dwell_s", float, 5.0, zero_ok=True),
        bandwidth_mbps=t.positive("bandwidth_mbps", float, 10.0),
    )
    if s.hysteresis >= 1:
        raise ConfigError(f"{t.key('hysteresis')}: must be < 1 (a fraction)")
    t.finish()
    return s


def parse_config(data: dict[str, Any], base: Path, path: Path | None = None) -> DeviceConfig:
    """Validate an already-parsed TOML document; ``base`` anchors relative paths."""
    root = _Table(data, "")
    heads = _heads(root.get("heads", (list, dict), None), base)
    cfg = DeviceConfig(
        path=path,
        device=_device(root.table("device"), base),
        camera=_camera(root.table("camera"), base),
        heads=heads,
        server=_server(root.table("server")),
        codec=_codec(root.table("codec")),
        power=_power(root.table("power"), base),
        gpio=_gpio(root.table("gpio")),
        logging=_logging(root.table("logging")),
        metrics=_metrics(root.table("metrics"), base),
        policy=_policy(root.table("policy")),
    )
    root.finish()
    return cfg


def load_config(path: str | Path) -> DeviceConfig:
    """Read and validate ``path``; every problem is a :class:`ConfigError` naming the key."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path.resolve().parent, path)
