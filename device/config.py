"""``device.toml``: the daemon's whole configuration, validated once at start.

Why strict: the daemon runs unattended for months; a typo in a key that silently falls back to
a default is a bug found weeks later. Every unknown key is an error naming it, every bad value
an error naming its dotted path (``server.window``), raised as :class:`ConfigError`.

How: each table is a :class:`wire.schema.Section` whose fields state type, default and bounds
once; :func:`parse_config` hands the parsed document to :func:`wire.schema.convert`. Relative
paths (models, manifests, metrics, camera folders) resolve against the config file's
directory, so a config dir can be moved as a unit.

No ``from __future__ import annotations`` and ``Optional``/``Union`` spelled out: msgspec
evaluates the annotations at run time and the board runs Python 3.9, where ``X | None`` is a
``TypeError`` (without the future import, linters targeting 3.9 say so too).
"""

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from hardware.backoff import Backoff
from hardware.camera import SOURCES
from wire.codecs import CODEC_NAMES
from wire.schema import Meta, OneOf, Required, Section, convert, field, replace
from wire.tomlcompat import tomllib

POWER_KINDS = ("ina226", "hwmon", "sim", "none")
OUTAGE_MODES = ("drop", "buffer")
LOG_LEVELS = ("debug", "info", "warning", "error")
# [[heads]] kinds: a split head (tail on the server), the whole model on the board, the
# whole model on the server (the picture sent as a JPEG; ``model`` is the cloud model's json).
PARTITION_KINDS = ("split", "local", "cloud")
OBJECTIVES = ("latency", "energy", "mix")
# Camera params that name files; resolved against the config directory.
_CAMERA_PATH_PARAMS = ("path", "root", "folder", "file")

Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Count = Annotated[int, Meta(ge=1)]


class ConfigError(ValueError):
    """A bad config file; the message names the offending key."""


class DeviceSection(Section):
    name: str = "splitfit-device"
    max_frames: Annotated[int, Meta(ge=0)] = 0  # 0: run until stopped
    fps_limit: NonNegative = 0.0  # 0: as fast as the pipeline goes
    startup_timeout_s: Positive = 30.0  # READY=1 at the latest after this
    drain_timeout_s: NonNegative = 2.0  # SIGTERM: wait this long for in-flight replies
    stall_timeout_s: Positive = 10.0  # no frame through the pipeline this long -> stop WATCHDOG=1
    watchdog_interval_s: Positive = 5.0  # used when systemd gives no WATCHDOG_USEC
    summary_path: Optional[Path] = None  # run summary JSON at exit


class ReconnectTable(Section):
    """A ``[*.reconnect]`` table: the one retry shape (``hardware.backoff.BACKOFF_KEYS``),
    its defaults those of :class:`~hardware.backoff.Backoff` (not re-typed here)."""

    initial: Positive = Backoff.initial
    maximum: Positive = Backoff.maximum
    factor: Annotated[float, Meta(ge=1)] = Backoff.factor
    max_attempts: Optional[Annotated[int, Meta(ge=0)]] = Backoff.max_attempts

    def check(self) -> None:
        if self.maximum < self.initial:
            raise self.invalid("maximum", f"must be >= initial ({self.initial})")

    def policy(self) -> Backoff:
        return Backoff(self.initial, self.maximum, self.factor, self.max_attempts)


class CameraSection(Section):
    source: Annotated[str, OneOf(SOURCES)] = "synthetic"
    params: dict[str, Any] = field(default_factory=dict)
    frame_timeout_s: Positive = 1.0
    # [camera.reconnect]: the source reopening a lost device, and (without max_attempts,
    # which only bounds the source) the daemon re-creating a source that gave up.
    reconnect_table: ReconnectTable = field(default_factory=ReconnectTable, name="reconnect")

    def check(self) -> None:
        if "reconnect" in self.params:
            raise self.invalid("params.reconnect", "moved: write a [camera.reconnect] table")

    @property
    def reconnect(self) -> Backoff:
        """The camera's retry policy, from ``[camera.reconnect]``."""
        return self.reconnect_table.policy()


class HeadSection(Section):
    # name, model, manifest stay positional (callers build heads in code); ``model`` is
    # Required rather than default-less because a required field may not follow ``name``.
    name: Optional[str] = None  # None: the model's stem (head{i} when there are several)
    model: Annotated[Optional[Path], Required()] = None
    manifest: Optional[Path] = None  # None: next to the model, .json
    num_threads: Count = 1
    tail_ms: Optional[NonNegative] = None  # server time of this split's tail when idle (policy)
    kind: Annotated[str, OneOf(PARTITION_KINDS)] = "split"  # split | local (no server) | cloud
    quality: Optional[Annotated[int, Meta(ge=1, le=100)]] = None  # cloud: JPEG q (None: manifest)

    def check(self) -> None:
        if self.model is not None:
            if self.manifest is None:
                self._set("manifest", self.model.with_suffix(".json"))
            if self.name is None:
                self._set("name", self.model.stem)

    @property
    def remote(self) -> bool:
        """True when frames of this partition go to the server."""
        return self.kind != "local"


class ServerSection(Section):
    endpoints: Union[str, Annotated[tuple[str, ...], Meta(min_length=1)]] = (
        "tcp://127.0.0.1:5555",
    )
    window: Count = 4
    reply_timeout_s: Positive = 5.0
    hello_timeout_s: Positive = 1.0
    heartbeat_s: Positive = 1.0
    heartbeat_misses: Count = 3
    reconnect_min_s: Positive = 0.1
    reconnect_max_s: Positive = 5.0
    outage: Annotated[str, OneOf(OUTAGE_MODES)] = "drop"
    outage_buffer: Count = 16
    token_id: Optional[str] = None
    max_payload: Count = 1 << 20

    def check(self) -> None:
        if isinstance(self.endpoints, str):  # one endpoint may be written as a string
            self._set("endpoints", (self.endpoints,))
        for e in self.endpoints:
            if "://" not in e:
                raise self.invalid(
                    "endpoints", f"entry {e!r} is not a ZeroMQ endpoint like tcp://host:port"
                )
        if self.reconnect_max_s < self.reconnect_min_s:
            raise self.invalid("reconnect_max_s", "must be >= reconnect_min_s")

    @property
    def reconnect(self) -> Backoff:
        """HELLO retry delays: ``reconnect_min_s * 2**attempt``, capped at ``reconnect_max_s``."""
        return Backoff(self.reconnect_min_s, self.reconnect_max_s)


class CodecSection(Section):
    name: Annotated[Optional[str], OneOf(CODEC_NAMES)] = None  # None: the manifest's default
    bits: Optional[Annotated[int, Meta(ge=1, le=8)]] = None
    params: Optional[dict[str, Any]] = None


class PowerSection(Section):
    monitor: Annotated[str, OneOf(POWER_KINDS)] = "none"
    rate_hz: Positive = 500.0
    capacity: Count = 65536
    params: dict[str, Any] = field(default_factory=dict)
    log_path: Optional[Path] = None  # crash-safe power log (hardware.powerlog CSV), optional


class GpioSection(Section):
    status_led: Optional[Union[int, str]] = None
    # "mock" for gpiozero's MockFactory; None (written "default"): gpiozero's own choice
    pin_factory: Optional[Literal["mock", "default"]] = None

    def check(self) -> None:
        if self.pin_factory == "default":
            self._set("pin_factory", None)


class LoggingSection(Section):
    level: Annotated[str, OneOf(LOG_LEVELS)] = "info"
    summary_interval_s: Positive = 10.0


class MetricsSection(Section):
    path: Optional[Path] = None
    max_bytes: Count = 10_000_000
    backups: Annotated[int, Meta(ge=0)] = 3


class PolicySection(Section):
    switching: bool = True
    hysteresis: Annotated[float, Meta(ge=0, lt=1)] = 0.15  # switch when >= 15 % better
    min_dwell_s: NonNegative = 5.0  # and not more often than this
    bandwidth_mbps: Positive = 10.0  # initial link estimate before replies refine it
    local_fallback: bool = True  # server unreachable: answer on a local partition meanwhile
    objective: Annotated[str, OneOf(OBJECTIVES)] = "latency"  # latency | energy | mix
    latency_weight: Annotated[float, Meta(ge=0, le=1)] = 0.5  # mix: latency's weight
    min_accuracy: Optional[Annotated[float, Meta(ge=0, le=1)]] = None  # vs manifest accuracy
    probe_interval_s: NonNegative = (
        10.0  # at most one probe frame this often; 0: none after start-up
    )
    probe_budget: Annotated[float, Meta(gt=0, le=1)] = 0.05  # probes add <= 5 % to the best's cost
    min_samples: Annotated[int, Meta(ge=0)] = (
        3  # start-up frames on each partition before choosing it
    )


class _Document(Section):
    """The tables of ``device.toml``; :class:`DeviceConfig` adds where it was read from."""

    heads: Annotated[tuple[HeadSection, ...], Meta(min_length=1)]
    device: DeviceSection = field(default_factory=DeviceSection)
    camera: CameraSection = field(default_factory=CameraSection)
    server: ServerSection = field(default_factory=ServerSection)
    codec: CodecSection = field(default_factory=CodecSection)
    power: PowerSection = field(default_factory=PowerSection)
    gpio: GpioSection = field(default_factory=GpioSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    policy: PolicySection = field(default_factory=PolicySection)

    def check(self) -> None:
        names = [h.name for h in self.heads]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise self.invalid("heads", f"has a duplicate name {dup[0]!r}")


class DeviceConfig(_Document):
    path: Optional[Path] = None  # the file it was read from (None: built in code)


def parse_config(data: dict[str, Any], base: Path, path: Optional[Path] = None) -> DeviceConfig:
    """Validate an already-parsed TOML document; ``base`` anchors relative paths."""
    if not isinstance(data, dict):
        raise ConfigError(f"the config must be a table, got {type(data).__name__}")
    heads = data.get("heads")
    if isinstance(heads, dict):  # a single [heads] table is accepted too
        heads = [heads]
    if isinstance(heads, list) and len(heads) > 1:  # several heads: head0, head1, ... by default
        heads = [
            {"name": f"head{i}", **h} if isinstance(h, dict) else h for i, h in enumerate(heads)
        ]
    if "heads" in data:
        data = {**data, "heads": heads}
    doc = convert(data, _Document, error=ConfigError, base=base)
    camera = doc.camera
    params = dict(camera.params)
    for k in _CAMERA_PATH_PARAMS:
        if isinstance(params.get(k), str):
            params[k] = str(_resolve(base, params[k]))
    fields = {name: getattr(doc, name) for name in doc.__struct_fields__}
    return DeviceConfig(**{**fields, "camera": replace(camera, params=params)}, path=path)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def load_config(path: Union[str, Path]) -> DeviceConfig:
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
