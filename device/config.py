"""``device.toml``: the daemon's whole configuration, validated once at start.

Why strict: the daemon runs unattended for months; a typo in a key that silently falls back to
a default is a bug found weeks later. Every unknown key is an error naming it, every bad value
an error naming its dotted path (``server.window``), raised as :class:`ConfigError`.

Relative paths (models, manifests, metrics, camera folders) resolve against the config file's
directory, so a config dir can be moved as a unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hardware.backoff import Backoff
from hardware.camera import SOURCES
from wire.codecs import CODEC_NAMES
from wire.tomlcompat import tomllib
from wire.tomltable import REQUIRED, TomlTable

POWER_KINDS = ("ina226", "hwmon", "sim", "none")
OUTAGE_MODES = ("drop", "buffer")
LOG_LEVELS = ("debug", "info", "warning", "error")
# [[heads]] kinds: a split head (tail on the server), the whole model on the board.
PARTITION_KINDS = ("split", "local")
OBJECTIVES = ("latency", "energy", "mix")
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
    # [camera.reconnect]: the source reopening a lost device, and (without max_attempts,
    # which only bounds the source) the daemon re-creating a source that gave up.
    reconnect: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True)
class HeadSection:
    name: str
    model: Path
    manifest: Path
    num_threads: int = 1
    tail_ms: float | None = None  # server time of this split's tail when idle (policy input)
    kind: str = "split"  # split | local (the whole model on the board, no server)

    @property
    def remote(self) -> bool:
        """True when frames of this partition go to the server."""
        return self.kind != "local"


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

    @property
    def reconnect(self) -> Backoff:
        """HELLO retry delays: ``reconnect_min_s * 2**attempt``, capped at ``reconnect_max_s``."""
        return Backoff(self.reconnect_min_s, self.reconnect_max_s)


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
    local_fallback: bool = True  # server unreachable: answer on a local partition meanwhile
    objective: str = "latency"  # latency | energy | mix
    latency_weight: float = 0.5  # mix: latency's weight (1 - w: energy)
    min_accuracy: float | None = None  # never choose a partition whose manifest says less
    probe_interval_s: float = 10.0  # run a frame on another partition this often; 0: never


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


# --- sections --------------------------------------------------------------------------------
# Each reads its keys through wire.tomltable.TomlTable (typed, dotted-path errors) and ends
# with ``finish()``, which turns every key it did not read into an "unknown key" error.


def _device(t: TomlTable, base: Path) -> DeviceSection:
    d = DeviceSection
    s = DeviceSection(
        name=t.string("name", d.name),
        max_frames=t.integer("max_frames", 0, lo=0),
        fps_limit=t.number("fps_limit", 0.0, lo=0),
        startup_timeout_s=t.number("startup_timeout_s", d.startup_timeout_s, above=0),
        drain_timeout_s=t.number("drain_timeout_s", d.drain_timeout_s, lo=0),
        stall_timeout_s=t.number("stall_timeout_s", d.stall_timeout_s, above=0),
        watchdog_interval_s=t.number("watchdog_interval_s", d.watchdog_interval_s, above=0),
        summary_path=t.path("summary_path", base),
    )
    t.finish()
    return s


def _camera(t: TomlTable, base: Path) -> CameraSection:
    source = t.string("source", "synthetic", choices=tuple(SOURCES))
    params = dict(t.get("params", dict, {}))
    if "reconnect" in params:
        raise t.invalid("params.reconnect", "moved: write a [camera.reconnect] table")
    for k in _CAMERA_PATH_PARAMS:
        if isinstance(params.get(k), str):
            params[k] = str(_resolve(base, params[k]))
    s = CameraSection(
        source=source,
        params=params,
        frame_timeout_s=t.number("frame_timeout_s", 1.0, above=0),
        reconnect=_reconnect(t.table("reconnect"), Backoff()),
    )
    t.finish()
    return s


def _reconnect(t: TomlTable, default: Backoff) -> Backoff:
    """A ``[*.reconnect]`` table: the one retry shape (``hardware.backoff.BACKOFF_KEYS``)."""
    initial = t.number("initial", default.initial, above=0)
    maximum = t.number("maximum", default.maximum, above=0)
    factor = t.number("factor", default.factor, lo=1)
    max_attempts = t.integer("max_attempts", default.max_attempts, lo=0)
    t.finish()
    if maximum < initial:
        raise t.invalid("maximum", f"must be >= {t.key('initial')}")
    return Backoff(initial, maximum, factor, max_attempts)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _heads(items: list[TomlTable] | None, base: Path) -> tuple[HeadSection, ...]:
    if items is None:
        raise ConfigError("missing key 'heads' (at least one [[heads]] with model = ...)")
    if not items:
        raise ConfigError("heads: expected an array of tables [[heads]] with at least one entry")
    heads: list[HeadSection] = []
    for i, t in enumerate(items):
        model = t.path("model", base, REQUIRED)
        name = t.string("name", model.stem if len(items) == 1 else f"head{i}")
        heads.append(
            HeadSection(
                name=name,
                model=model,
                manifest=t.path("manifest", base, model.with_suffix(".json")),
                num_threads=t.integer("num_threads", 1, lo=1),
                tail_ms=t.number("tail_ms", None, lo=0),
                kind=t.string("kind", "split", choices=PARTITION_KINDS),
            )
        )
        t.finish()
    names = [h.name for h in heads]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"heads: duplicate name {sorted(dup)[0]!r}")
    return tuple(heads)


def _server(t: TomlTable) -> ServerSection:
    endpoints = t.strings("endpoints", ServerSection.endpoints)
    for e in endpoints:
        if "://" not in e:
            raise t.invalid(
                "endpoints", f"entry {e!r} is not a ZeroMQ endpoint like tcp://host:port"
            )
    s = ServerSection(
        endpoints=endpoints,
        window=t.integer("window", 4, lo=1),
        reply_timeout_s=t.number("reply_timeout_s", 5.0, above=0),
        hello_timeout_s=t.number("hello_timeout_s", 1.0, above=0),
        heartbeat_s=t.number("heartbeat_s", 1.0, above=0),
        heartbeat_misses=t.integer("heartbeat_misses", 3, lo=1),
        reconnect_min_s=t.number("reconnect_min_s", 0.1, above=0),
        reconnect_max_s=t.number("reconnect_max_s", 5.0, above=0),
        outage=t.string("outage", "drop", choices=OUTAGE_MODES),
        outage_buffer=t.integer("outage_buffer", 16, lo=1),
        token_id=t.string("token_id", None),
        max_payload=t.integer("max_payload", 1 << 20, lo=1),
    )
    if s.reconnect_max_s < s.reconnect_min_s:
        raise t.invalid("reconnect_max_s", "must be >= server.reconnect_min_s")
    t.finish()
    return s


def _codec(t: TomlTable) -> CodecSection:
    s = CodecSection(
        name=t.string("name", None, choices=tuple(CODEC_NAMES)),  # the codec registry
        bits=t.integer("bits", None, lo=1, hi=8),
        params=t.get("params", dict, None),
    )
    t.finish()
    return s


def _power(t: TomlTable, base: Path) -> PowerSection:
    s = PowerSection(
        monitor=t.string("monitor", "none", choices=POWER_KINDS),
        rate_hz=t.number("rate_hz", 500.0, above=0),
        capacity=t.integer("capacity", 65536, lo=1),
        params=dict(t.get("params", dict, {})),
        log_path=t.path("log_path", base),
    )
    t.finish()
    return s


def _gpio(t: TomlTable) -> GpioSection:
    factory = t.string("pin_factory", "default", choices=("mock", "default"))
    s = GpioSection(
        status_led=t.get("status_led", (int, str), None),
        pin_factory=None if factory == "default" else factory,
    )
    t.finish()
    return s


def _logging(t: TomlTable) -> LoggingSection:
    s = LoggingSection(
        level=t.string("level", "info", choices=LOG_LEVELS),
        summary_interval_s=t.number("summary_interval_s", 10.0, above=0),
    )
    t.finish()
    return s


def _metrics(t: TomlTable, base: Path) -> MetricsSection:
    s = MetricsSection(
        path=t.path("path", base),
        max_bytes=t.integer("max_bytes", 10_000_000, lo=1),
        backups=t.integer("backups", 3, lo=0),
    )
    t.finish()
    return s


def _policy(t: TomlTable) -> PolicySection:
    s = PolicySection(
        switching=t.boolean("switching", True),
        hysteresis=t.number("hysteresis", 0.15, lo=0),
        min_dwell_s=t.number("min_dwell_s", 5.0, lo=0),
        bandwidth_mbps=t.number("bandwidth_mbps", 10.0, above=0),
        local_fallback=t.boolean("local_fallback", True),
        objective=t.string("objective", "latency", choices=OBJECTIVES),
        latency_weight=t.number("latency_weight", 0.5, lo=0, hi=1),
        min_accuracy=t.number("min_accuracy", None, lo=0, hi=1),
        probe_interval_s=t.number("probe_interval_s", 10.0, lo=0),
    )
    if s.hysteresis >= 1:
        raise t.invalid("hysteresis", "must be < 1 (a fraction)")
    t.finish()
    return s


def parse_config(data: dict[str, Any], base: Path, path: Path | None = None) -> DeviceConfig:
    """Validate an already-parsed TOML document; ``base`` anchors relative paths."""
    root = TomlTable(data, error=ConfigError)
    has_heads = "heads" in root
    head_tables = root.tables("heads", single_ok=True)  # a single [heads] table is accepted too
    cfg = DeviceConfig(
        path=path,
        device=_device(root.table("device"), base),
        camera=_camera(root.table("camera"), base),
        heads=(),  # filled in below
        server=_server(root.table("server")),
        codec=_codec(root.table("codec")),
        power=_power(root.table("power"), base),
        gpio=_gpio(root.table("gpio")),
        logging=_logging(root.table("logging")),
        metrics=_metrics(root.table("metrics"), base),
        policy=_policy(root.table("policy")),
    )
    # Before the heads checks, so a mistyped [[head]] is named as the unknown key it is.
    root.finish()
    return replace(cfg, heads=_heads(head_tables if has_heads else None, base))


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
