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


# --------------------------------------------------------------------------- helpers


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            dotted = f"{where}.{key}" if where else key
            raise ConfigError(
                f"unknown config key {dotted!r} (allowed: {', '.join(sorted(allowed))})"
            )


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key!r} must be a table, got {type(value).__name__}")
    return value


def _int(
    table: Mapping[str, Any], key: str, where: str, default: int, *, lo: int, hi: int | None = None
) -> int:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"{where}.{key} must be {bound}, got {value}")
    return value


def _float(table: Mapping[str, Any], key: str, where: str, default: float, *, lo: float) -> float:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
    if value < lo:
        raise ConfigError(f"{where}.{key} must be >= {lo}, got {value}")
    return float(value)


def _bool(table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
    return value


def _str(
    table: Mapping[str, Any],
    key: str,
    where: str,
    default: str,
    choices: tuple[str, ...] | None = None,
) -> str:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} must be a non-empty string, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}.{key} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _path(table: Mapping[str, Any], key: str, where: str, base: Path) -> Path | None:
    if key not in table:
        return None
    value = _str(table, key, where, "")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


# --------------------------------------------------------------------------- sections


def _server(data: Mapping[str, Any]) -> ServerSection:
    t = _table(data, "server")
    d = ServerSection()
    _check_keys(t, set(d.__dataclass_fields__), "server")
    bind = t.get("bind", list(d.bind))
    if isinstance(bind, str):
        bind = [bind]
    if not isinstance(bind, list) or not bind or not all(isinstance(b, str) for b in bind):
        raise ConfigError(
            f"server.bind must be a string or a non-empty list of strings, got {bind!r}"
        )
    for endpoint in bind:
        if not endpoint.startswith(BIND_SCHEMES):
            raise ConfigError(
                f"server.bind entry {endpoint!r} must start with one of {', '.join(BIND_SCHEMES)}"
            )
    return ServerSection(
        bind=tuple(bind),
        max_payload=_int(t, "max_payload", "server", d.max_payload, lo=1, hi=64 << 20),
        max_sessions=_int(t, "max_sessions", "server", d.max_sessions, lo=1),
        session_idle_s=_float(t, "session_idle_s", "server", d.session_idle_s, lo=0.001),
        linger_ms=_int(t, "linger_ms", "server", d.linger_ms, lo=0),
        decode_threads=_int(t, "decode_threads", "server", d.decode_threads, lo=1, hi=64),
        sndhwm=_int(t, "sndhwm", "server", d.sndhwm, lo=1),
        rcvhwm=_int(t, "rcvhwm", "server", d.rcvhwm, lo=1),
        top_k=_int(t, "top_k", "server", d.top_k, lo=1, hi=1000),
    )


def _compute(data: Mapping[str, Any]) -> ComputeSection:
    t = _table(data, "compute")
    d = ComputeSection()
    _check_keys(t, set(d.__dataclass_fields__), "compute")
    return ComputeSection(
        device=_str(t, "device", "compute", d.device, DEVICES),
        threads=_int(t, "threads", "compute", d.threads, lo=0, hi=1024),
        interop_threads=_int(t, "interop_threads", "compute", d.interop_threads, lo=0, hi=1024),
        warmup=_bool(t, "warmup", "compute", d.warmup),
    )


def _batching(t: Mapping[str, Any], where: str, d: BatchingSection) -> BatchingSection:
    return BatchingSection(
        max_batch=_int(t, "max_batch", where, d.max_batch, lo=1, hi=4096),
        max_wait_us=_int(t, "max_wait_us", where, d.max_wait_us, lo=0, hi=10_000_000),
        max_queue=_int(t, "max_queue", where, d.max_queue, lo=1),
    )


def _models(
    data: Mapping[str, Any], base: Path, defaults: BatchingSection
) -> tuple[ModelEntry, ...]:
    raw = data.get("models", [])
    if not isinstance(raw, list):
        raise ConfigError("'models' must be an array of tables ([[models]])")
    allowed = {"path", "tail", "manifest", "strict_bits", *BatchingSection.__dataclass_fields__}
    entries = []
    for i, t in enumerate(raw):
        where = f"models[{i}]"
        if not isinstance(t, Mapping):
            raise ConfigError(f"{where} must be a table")
        _check_keys(t, allowed, where)
        directory = _path(t, "path", where, base)
        tail = _path(t, "tail", where, base)
        manifest = _path(t, "manifest", where, base)
        if directory is not None and (tail is not None or manifest is not None):
            raise ConfigError(
                f"{where}: give either 'path' or 'tail' (+ optional 'manifest'), not both"
            )
        if directory is not None:
            tail, manifest = directory / "tail.pt", directory / "tail.json"
        elif tail is not None:
            manifest = manifest if manifest is not None else tail.with_name("tail.json")
        else:
            raise ConfigError(
                f"{where}: missing key 'path' (a directory with tail.pt and tail.json)"
            )
        entries.append(
            ModelEntry(
                tail=tail,
                manifest=manifest,
                batching=_batching(t, where, defaults),
                strict_bits=_bool(t, "strict_bits", where, True),
            )
        )
    return tuple(entries)


def _auth(data: Mapping[str, Any], base: Path) -> AuthSection:
    t = _table(data, "auth")
    _check_keys(t, set(AuthSection.__dataclass_fields__), "auth")
    enabled = _bool(t, "enabled", "auth", False)
    secret = _path(t, "server_secret_key", "auth", base)
    clients = _path(t, "client_keys_dir", "auth", base)
    if enabled and secret is None:
        raise ConfigError("auth.server_secret_key is required when auth.enabled = true")
    if enabled and clients is None:
        raise ConfigError("auth.client_keys_dir is required when auth.enabled = true")
    return AuthSection(enabled=enabled, server_secret_key=secret, client_keys_dir=clients)


def _metrics(data: Mapping[str, Any]) -> MetricsSection:
    t = _table(data, "metrics")
    d = MetricsSection()
    _check_keys(t, set(d.__dataclass_fields__), "metrics")
    return MetricsSection(
        enabled=_bool(t, "enabled", "metrics", d.enabled),
        host=_str(t, "host", "metrics", d.host),
        port=_int(t, "port", "metrics", d.port, lo=0, hi=65535),
    )


def _log(data: Mapping[str, Any]) -> LogSection:
    t = _table(data, "log")
    _check_keys(t, {"level"}, "log")
    return LogSection(level=_str(t, "level", "log", "info", LOG_LEVELS))


# --------------------------------------------------------------------------- entry points


def config_from_dict(data: Mapping[str, Any], base_dir: Path | str = ".") -> ServerConfig:
    """Validate a parsed TOML document (or an equivalent dict built in code)."""
    base = Path(base_dir)
    _check_keys(data, {"server", "compute", "batching", "models", "auth", "metrics", "log"}, "")
    batching_table = _table(data, "batching")
    _check_keys(batching_table, set(BatchingSection.__dataclass_fields__), "batching")
    batching = _batching(batching_table, "batching", BatchingSection())
    models = _models(data, base, batching)
    if not models:
        raise ConfigError("no tails configured: add at least one [[models]] table with a 'path'")
    return ServerConfig(
        server=_server(data),
        compute=_compute(data),
        batching=batching,
        models=models,
        auth=_auth(data, base),
        metrics=_metrics(data),
        log=_log(data),
    )


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
