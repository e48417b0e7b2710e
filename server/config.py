"""Server configuration: one TOML file, validated once at the edge.

Why so strict: a typo in a long-running server's config (``max_wait_ms`` for
``max_wait_us``) would otherwise be silently ignored and show up weeks later as a latency
mystery. Every unknown key is an error that names the key with its full dotted path, and
every bad value says what was expected.

How: each table is a :class:`wire.schema.Section` whose fields state type, default and bounds
once; :func:`config_from_dict` hands the parsed document to :func:`wire.schema.convert`.

Layout (see ``examples/server.toml``)::

    [server]   bind, max_payload, max_sessions, session_idle_s, linger_ms, decode_threads,
               sndhwm, rcvhwm, top_k
    [compute]  device ("auto" | "cpu" | "cuda"), threads, interop_threads, warmup
    [batching] max_batch, max_wait_us, max_queue          (defaults for every model)
    [tail]     backend ("local" | "ray"), ray_address, num_replicas, replica_cpus,
               request_timeout_s, reconnect_s; [tail.autoscaling] min_replicas,
               max_replicas, target_ongoing_requests (instead of num_replicas)
    [[models]] path (directory with tail.pt + tail.json) or tail + manifest,
               optional max_batch / max_wait_us / max_queue overrides, strict_bits
    [auth]     enabled, server_secret_key, client_keys_dir
    [metrics]  enabled, host, port (0 = pick a free port)
    [log]      level ("debug" | "info" | "warning" | "error")

Relative paths are resolved against the directory holding the config file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from wire.schema import Meta, OneOf, Section, convert, field

LOG_LEVELS = ("debug", "info", "warning", "error")
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("local", "ray")
BIND_SCHEMES = ("tcp://", "ipc://", "inproc://")

# Bounds shared by [batching] and the per-model overrides in [[models]].
MaxBatch = Annotated[int, Meta(ge=1, le=4096)]
MaxWaitUs = Annotated[int, Meta(ge=0, le=10_000_000)]
MaxQueue = Annotated[int, Meta(ge=1)]
Threads = Annotated[int, Meta(ge=0, le=1024)]
Replicas = Annotated[int, Meta(ge=1, le=1024)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


class ServerSection(Section):
    """Socket-level settings of the ROUTER front-end."""

    bind: str | Annotated[tuple[str, ...], Meta(min_length=1)] = ("tcp://127.0.0.1:5555",)
    max_payload: Annotated[int, Meta(ge=1, le=64 << 20)] = 1 << 20
    max_sessions: Annotated[int, Meta(ge=1)] = 1024
    session_idle_s: Annotated[float, Meta(ge=0.001)] = 600.0
    linger_ms: Annotated[int, Meta(ge=0)] = 500
    decode_threads: Annotated[int, Meta(ge=1, le=64)] = 2
    sndhwm: Annotated[int, Meta(ge=1)] = 10_000
    rcvhwm: Annotated[int, Meta(ge=1)] = 10_000
    top_k: Annotated[int, Meta(ge=1, le=1000)] = 5

    def check(self) -> None:
        if isinstance(self.bind, str):  # one endpoint may be written as a string
            self._set("bind", (self.bind,))
        for endpoint in self.bind:
            if not endpoint.startswith(BIND_SCHEMES):
                raise self.invalid(
                    "bind", f"entry {endpoint!r} must start with one of {', '.join(BIND_SCHEMES)}"
                )


class ComputeSection(Section):
    """Where and how wide the torch tails run."""

    device: Annotated[str, OneOf(DEVICES)] = "auto"
    threads: Threads = 0  # 0 = leave torch's default
    interop_threads: Threads = 0
    warmup: bool = True  # run each tail at batch 1 and max_batch before listening


class BatchingSection(Section):
    """Dynamic batcher limits (Triton semantics: whichever of size/delay comes first)."""

    max_batch: MaxBatch = 32
    max_wait_us: MaxWaitUs = 2000
    max_queue: MaxQueue = 512


class AutoscalingSection(Section):
    """Ray Serve autoscaling bounds; replaces a fixed ``num_replicas`` when present."""

    min_replicas: Annotated[int, Meta(ge=0, le=1024)] = 1
    max_replicas: Replicas = 2
    target_ongoing_requests: Annotated[float, Meta(gt=0)] = 8.0

    def check(self) -> None:
        if self.max_replicas < self.min_replicas:
            raise self.invalid("max_replicas", "must be >= tail.autoscaling.min_replicas")


class TailSection(Section):
    """Where the tails compute: in this process (``local``) or on a Ray cluster (``ray``).

    Why ``local`` is the default: the embedded demo and a single box need no cluster. The
    ``ray`` keys are read only when ``backend = "ray"``; ``request_timeout_s`` stays below the
    device's default ``reply_timeout_s`` (5 s) so a frame stuck in the cluster gets a typed
    ERROR before the board gives up on it.
    """

    backend: Annotated[str, OneOf(BACKENDS)] = "local"
    ray_address: NonEmptyStr = "auto"  # "auto" = the cluster this machine joined (`ray start`)
    # None when read: 1, unless [tail.autoscaling] sizes the pool (then giving both is an error)
    num_replicas: Replicas | None = None
    autoscaling: AutoscalingSection | None = None
    replica_cpus: Annotated[float, Meta(ge=0)] = 1.0
    request_timeout_s: Annotated[float, Meta(gt=0)] = 4.0
    reconnect_s: Annotated[float, Meta(gt=0)] = 1.0  # how often a lost cluster is probed

    def check(self) -> None:
        if self.num_replicas is None:
            self._set("num_replicas", 1)
        elif self.autoscaling is not None:
            raise self.invalid("num_replicas", "give either num_replicas or [tail.autoscaling]")


class ModelTable(Section):
    """One ``[[models]]`` entry as written: a directory, or a tail file (+ manifest), and
    batcher limits that override ``[batching]`` (None: inherit)."""

    path: Path | None = None  # a directory holding tail.pt and tail.json
    tail: Path | None = None
    manifest: Path | None = None  # None with ``tail``: tail.json next to it
    max_batch: MaxBatch | None = None
    max_wait_us: MaxWaitUs | None = None
    max_queue: MaxQueue | None = None
    # The tail was trained on codes of the manifest's bit depth; a HELLO offering another
    # depth would get confidently wrong answers, so it is refused unless this is false.
    strict_bits: bool = True

    def check(self) -> None:
        if self.path is not None and (self.tail is not None or self.manifest is not None):
            raise self.invalid(
                "path", "give either 'path' or 'tail' (+ optional 'manifest'), not both"
            )
        if self.path is None and self.tail is None:
            raise self.missing("path", "a directory with tail.pt and tail.json")

    def entry(self, defaults: BatchingSection) -> ModelEntry:
        """The tail to serve, its limits resolved against ``[batching]``."""
        if self.path is not None:
            tail, manifest = self.path / "tail.pt", self.path / "tail.json"
        else:
            assert self.tail is not None  # check() refused a table with neither
            tail = self.tail
            manifest = self.manifest if self.manifest is not None else tail.with_name("tail.json")
        overrides = {
            k: getattr(self, k)
            for k in ("max_batch", "max_wait_us", "max_queue")
            if getattr(self, k) is not None
        }
        batching = BatchingSection(**{**_fields(defaults), **overrides})
        return ModelEntry(tail, manifest, batching, self.strict_bits)


@dataclass(frozen=True)
class ModelEntry:
    """One tail to serve, resolved: a TorchScript file, its manifest, its batcher limits.
    (No defaults here: they are the :class:`ModelTable`'s and the ``[batching]`` table's.)"""

    tail: Path
    manifest: Path
    batching: BatchingSection
    strict_bits: bool


class AuthSection(Section):
    """Optional CURVE encryption with a client public-key allowlist."""

    enabled: bool = False
    server_secret_key: Path | None = None
    client_keys_dir: Path | None = None

    def check(self) -> None:
        if self.enabled and self.server_secret_key is None:
            raise self.invalid("server_secret_key", "is required when auth.enabled = true")
        if self.enabled and self.client_keys_dir is None:
            raise self.invalid("client_keys_dir", "is required when auth.enabled = true")


class MetricsSection(Section):
    """Prometheus HTTP endpoint; ``port = 0`` binds a free port (reported in the log)."""

    enabled: bool = True
    host: NonEmptyStr = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 9464


class LogSection(Section):
    level: Annotated[str, OneOf(LOG_LEVELS)] = "info"


class _Document(Section):
    """``server.toml`` as written."""

    server: ServerSection = field(default_factory=ServerSection)
    compute: ComputeSection = field(default_factory=ComputeSection)
    batching: BatchingSection = field(default_factory=BatchingSection)
    tail: TailSection = field(default_factory=TailSection)
    models: tuple[ModelTable, ...] = ()
    auth: AuthSection = field(default_factory=AuthSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    log: LogSection = field(default_factory=LogSection)


class ServerConfig(_Document):
    """The whole validated configuration: the document with each model resolved."""

    models: tuple[ModelEntry, ...] = ()  # type: ignore[assignment]


def _fields(section: Section) -> dict[str, Any]:
    return {name: getattr(section, name) for name in section.__struct_fields__}


# --------------------------------------------------------------------------- entry points


def config_from_dict(data: Mapping[str, Any], base_dir: Path | str = ".") -> ServerConfig:
    """Validate a parsed TOML document (or an equivalent dict built in code)."""
    doc = convert(data, _Document, error=ConfigError, base=Path(base_dir))
    if not doc.models:
        raise ConfigError("no tails configured: add at least one [[models]] table with a 'path'")
    models = tuple(m.entry(doc.batching) for m in doc.models)
    return ServerConfig(**{**_fields(doc), "models": models})


def load_config(path: Path | str) -> ServerConfig:
    """Read and validate ``server.toml``; raises ConfigError naming the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return config_from_dict(data, path.resolve().parent)
