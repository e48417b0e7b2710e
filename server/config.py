"""Server configuration: one TOML file, validated once at the edge.

Why so strict: a typo in a long-running server's config (``max_wait_ms`` for
``max_wait_us``) would otherwise be silently ignored and show up weeks later as a latency
mystery. Every unknown key is an error that names the key with its full dotted path, and
every bad value says what was expected.

Layout (see ``examples/server.toml``)::

    [server]   bind, max_payload, max_sessions, session_idle_s, linger_ms, decode_threads,
               sndhwm, rcvhwm, top_k
    [compute]  device ("auto" | "cpu" | "cuda"), threads, interop_threads, warmup
    [batching] max_batch, max_wait_us, max_queue          (defaults for every model)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wire.tomltable import TomlTable

LOG_LEVELS = ("debug", "info", "warning", "error")
DEVICES = ("auto", "cpu", "cuda")
BIND_SCHEMES = ("tcp://", "ipc://", "inproc://")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@dataclass(frozen=True)
class ServerSection:
    """Socket-level settings of the ROUTER front-end."""

    bind: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    max_payload: int = 1 << 20
    max_sessions: int = 1024
    session_idle_s: float = 600.0
    linger_ms: int = 500
    decode_threads: int = 2
    sndhwm: int = 10_000
    rcvhwm: int = 10_000
    top_k: int = 5


@dataclass(frozen=True)
class ComputeSection:
    """Where and how wide the torch tails run."""

    device: str = "auto"
    threads: int = 0  # 0 = leave torch's default
    interop_threads: int = 0
    warmup: bool = True  # run each tail at batch 1 and max_batch before listening


@dataclass(frozen=True)
class BatchingSection:
    """Dynamic batcher limits (Triton semantics: whichever of size/delay comes first)."""

    max_batch: int = 32
    max_wait_us: int = 2000
    max_queue: int = 512


@dataclass(frozen=True)
class ModelEntry:
    """One tail to serve: a TorchScript file and its manifest."""

    tail: Path
    manifest: Path
    batching: BatchingSection
    # The tail was trained on codes of the manifest's bit depth; a HELLO offering another
    # depth would get confidently wrong answers, so it is refused unless this is false.
    strict_bits: bool = True


@dataclass(frozen=True)
class AuthSection:
    """Optional CURVE encryption with a client public-key allowlist."""

    enabled: bool = False
    server_secret_key: Path | None = None
    client_keys_dir: Path | None = None


@dataclass(frozen=True)
class MetricsSection:
    """Prometheus HTTP endpoint; ``port = 0`` binds a free port (reported in the log)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class LogSection:
    level: str = "info"


@dataclass(frozen=True)
class ServerConfig:
    """The whole validated configuration."""

    server: ServerSection = field(default_factory=ServerSection)
    compute: ComputeSection = field(default_factory=ComputeSection)
    batching: BatchingSection = field(default_factory=BatchingSection)
    models: tuple[ModelEntry, ...] = ()
    auth: AuthSection = field(default_factory=AuthSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    log: LogSection = field(default_factory=LogSection)


# --------------------------------------------------------------------------- sections
# Each reads its keys through wire.tomltable.TomlTable (typed, dotted-path errors) and ends
# with ``finish()``, which turns every key it did not read into an "unknown key" error that
# lists the allowed ones.


def _server(t: TomlTable) -> ServerSection:
    d = ServerSection()
    bind = t.strings("bind", d.bind)
    for endpoint in bind:
        if not endpoint.startswith(BIND_SCHEMES):
            raise t.invalid(
                "bind", f"entry {endpoint!r} must start with one of {', '.join(BIND_SCHEMES)}"
            )
    s = ServerSection(
        bind=bind,
        max_payload=t.integer("max_payload", d.max_payload, lo=1, hi=64 << 20),
        max_sessions=t.integer("max_sessions", d.max_sessions, lo=1),
        session_idle_s=t.number("session_idle_s", d.session_idle_s, lo=0.001),
        linger_ms=t.integer("linger_ms", d.linger_ms, lo=0),
        decode_threads=t.integer("decode_threads", d.decode_threads, lo=1, hi=64),
        sndhwm=t.integer("sndhwm", d.sndhwm, lo=1),
        rcvhwm=t.integer("rcvhwm", d.rcvhwm, lo=1),
        top_k=t.integer("top_k", d.top_k, lo=1, hi=1000),
    )
    t.finish()
    return s


def _compute(t: TomlTable) -> ComputeSection:
    d = ComputeSection()
    s = ComputeSection(
        device=t.string("device", d.device, choices=DEVICES),
        threads=t.integer("threads", d.threads, lo=0, hi=1024),
        interop_threads=t.integer("interop_threads", d.interop_threads, lo=0, hi=1024),
        warmup=t.boolean("warmup", d.warmup),
    )
    t.finish()
    return s


def _batching(t: TomlTable, d: BatchingSection) -> BatchingSection:
    """The batcher limits in ``t`` over defaults ``d``; no ``finish()``: [[models]] entries
    hold these keys next to their own."""
    return BatchingSection(
        max_batch=t.integer("max_batch", d.max_batch, lo=1, hi=4096),
        max_wait_us=t.integer("max_wait_us", d.max_wait_us, lo=0, hi=10_000_000),
        max_queue=t.integer("max_queue", d.max_queue, lo=1),
    )


def _model(t: TomlTable, base: Path, defaults: BatchingSection) -> ModelEntry:
    directory = t.path("path", base)
    tail = t.path("tail", base)
    manifest = t.path("manifest", base)
    if directory is not None and (tail is not None or manifest is not None):
        raise ConfigError(
            f"{t.where}: give either 'path' or 'tail' (+ optional 'manifest'), not both"
        )
    if directory is not None:
        tail, manifest = directory / "tail.pt", directory / "tail.json"
    elif tail is not None:
        manifest = manifest if manifest is not None else tail.with_name("tail.json")
    else:
        raise ConfigError(f"{t.where}: missing key 'path' (a directory with tail.pt and tail.json)")
    entry = ModelEntry(
        tail=tail,
        manifest=manifest,
        batching=_batching(t, defaults),
        strict_bits=t.boolean("strict_bits", True),
    )
    t.finish()
    return entry


def _auth(t: TomlTable, base: Path) -> AuthSection:
    s = AuthSection(
        enabled=t.boolean("enabled", False),
        server_secret_key=t.path("server_secret_key", base),
        client_keys_dir=t.path("client_keys_dir", base),
    )
    if s.enabled and s.server_secret_key is None:
        raise t.invalid("server_secret_key", "is required when auth.enabled = true")
    if s.enabled and s.client_keys_dir is None:
        raise t.invalid("client_keys_dir", "is required when auth.enabled = true")
    t.finish()
    return s


def _metrics(t: TomlTable) -> MetricsSection:
    d = MetricsSection()
    s = MetricsSection(
        enabled=t.boolean("enabled", d.enabled),
        host=t.string("host", d.host, nonempty=True),
        port=t.integer("port", d.port, lo=0, hi=65535),
    )
    t.finish()
    return s


def _log(t: TomlTable) -> LogSection:
    s = LogSection(level=t.string("level", "info", choices=LOG_LEVELS))
    t.finish()
    return s


# --------------------------------------------------------------------------- entry points


def config_from_dict(data: Mapping[str, Any], base_dir: Path | str = ".") -> ServerConfig:
    """Validate a parsed TOML document (or an equivalent dict built in code)."""
    base = Path(base_dir)
    root = TomlTable(data, error=ConfigError)
    batching_t = root.table("batching")
    batching = _batching(batching_t, BatchingSection())
    batching_t.finish()
    models = tuple(_model(t, base, batching) for t in root.tables("models"))
    cfg = ServerConfig(
        server=_server(root.table("server")),
        compute=_compute(root.table("compute")),
        batching=batching,
        models=models,
        auth=_auth(root.table("auth"), base),
        metrics=_metrics(root.table("metrics")),
        log=_log(root.table("log")),
    )
    # Before the "no tails" check, so a mistyped [[model]] is named as the unknown key it is.
    root.finish()
    if not models:
        raise ConfigError("no tails configured: add at least one [[models]] table with a 'path'")
    return cfg


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
