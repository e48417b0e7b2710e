"""``server.toml`` and ``device.toml`` written from the daemons' own config types.

A benchmark builds the sections (:class:`device.config.DeviceConfig`, the
:mod:`server.config` sections) and :func:`write_device_config` / :func:`write_server_config`
encode them. Why not f-strings: a key renamed or a bound tightened in the daemon's schema
now fails where the benchmark builds its config, naming the key, instead of as a daemon that
exits at start-up inside a network namespace. Each file is validated by the daemon's own
reader before it is written (atomically), so what is on disk is what the daemon will run.

Only values that differ from the schema's default are written: the file says what the
benchmark chose, and a default changed in the daemon reaches the benchmark too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from wire.atomicfile import write_text_atomic
from wire.schema import Section

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# A server.toml as sections by table name; ``models`` is a sequence of ModelTable.
ServerTables = Mapping[str, "Section | Sequence[Section]"]


# ------------------------------------------------------------------ sections -> plain data


def to_data(value: Any) -> Any:
    """A Section (or anything inside one) as TOML-ready plain data: fields equal to their
    declared default and ``None`` (TOML has no null) left out, keys by their TOML names,
    paths as strings, tuples as lists."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for f in msgspec.structs.fields(type(value)):
            v = getattr(value, f.name)
            if v is None or _is_default(f, v):
                continue
            out[f.encode_name] = to_data(v)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _is_default(f: msgspec.structs.FieldInfo, value: Any) -> bool:
    if f.default is not msgspec.NODEFAULT:
        default = f.default
    elif f.default_factory is not msgspec.NODEFAULT:
        default = f.default_factory()
    else:
        return False
    return type(value) is type(default) and value == default


# ------------------------------------------------------------------ plain data -> TOML text


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text of a mapping of plain data (str/int/float/bool, lists, tables)."""
    lines: list[str] = []
    _table(lines, (), data, header=None)
    return "\n".join(lines).strip("\n") + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _table(lines: list[str], path: tuple[str, ...], data: Mapping[str, Any], header: Any) -> None:
    scalars = [(k, v) for k, v in data.items() if not _is_table(v) and not _is_table_array(v)]
    tables = [(k, v) for k, v in data.items() if _is_table(v)]
    arrays = [(k, v) for k, v in data.items() if _is_table_array(v)]
    array_item = header is not None and header.startswith("[[")
    if not (scalars or tables or arrays or array_item):
        return  # an empty table says nothing: every key of it is at its default
    if header is not None and (scalars or array_item):
        lines.append("")
        lines.append(header)
    for k, v in scalars:
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables:
        sub = (*path, k)
        _table(lines, sub, v, header=f"[{'.'.join(map(_key, sub))}]")
    for k, items in arrays:
        sub = (*path, k)
        for item in items:
            _table(lines, sub, item, header=f"[[{'.'.join(map(_key, sub))}]]")


def _key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _string(k)


def _string(s: str) -> str:
    # JSON's escapes (\" \\ \b \f \n \r \t \uXXXX) are TOML basic-string escapes too; DEL is
    # the one control character JSON leaves raw and TOML refuses.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} to TOML")


# ------------------------------------------------------------------ the two daemons' files


def device_toml(config: Any) -> str:
    """``device.toml`` text of a :class:`device.config.DeviceConfig` built in code."""
    data = to_data(config)
    data.pop("path", None)  # where a config was read from, not a key of the file
    return dumps(data)


def write_device_config(path: Path, config: Any, comment: str = "") -> Path:
    """Write ``config`` (a DeviceConfig) as ``path``, after ``splitfit-device``'s own reader
    has accepted the text (ConfigError naming the key otherwise; nothing is written)."""
    from device.config import parse_config

    text = device_toml(config)
    parse_config(_loads(text), path.parent)
    return _write(path, text, comment)


def server_toml(tables: ServerTables) -> str:
    """``server.toml`` text of :mod:`server.config` sections by table name."""
    return dumps({name: to_data(section) for name, section in tables.items()})


def write_server_config(path: Path, tables: ServerTables, comment: str = "") -> Path:
    """Write ``tables`` as ``path``, after ``splitfit-server``'s own reader has accepted the
    text (ConfigError naming the key otherwise; nothing is written)."""
    from server.config import config_from_dict

    text = server_toml(tables)
    config_from_dict(_loads(text), path.parent)
    return _write(path, text, comment)


def _loads(text: str) -> dict[str, Any]:
    from wire.tomlcompat import tomllib

    return tomllib.loads(text)


def _write(path: Path, text: str, comment: str) -> Path:
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, head + text)
    return path
