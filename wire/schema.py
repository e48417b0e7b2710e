"""Declared config tables: one way to validate what a board or a server is told to do.

Why: ``device.toml``, ``server.toml``, the manifests, the HELLO and the codec/camera/power
parameters were checked by six hand-written styles, and the config defaults were written twice
(in the dataclass and again in the reader). Here a table is a :class:`Section` — a frozen
`msgspec <https://jcristharif.com/msgspec/>`_ ``Struct`` that refuses unknown fields — whose
fields state the type, the default and the bounds once (``Annotated[int, Meta(ge=1)] = 4``);
:func:`convert` checks a parsed document against it in C and turns msgspec's terse message into
one that names the key by its dotted path (``server.window``, ``heads[0].model``), says the
rule and shows the value, raised as the caller's own exception class.

What msgspec cannot say, a field declares with a marker in its ``Annotated`` metadata
(:class:`OneOf` for choices read from a live registry, :class:`NonEmpty`), and every float must
be finite: TOML allows ``nan``, which compares false with everything and silently disables the
timeout it configures. Rules across keys go in :meth:`Section.check`, raising
:meth:`Section.invalid`. msgspec is a small C wheel with aarch64 builds from cp39 up, so the
board can use it; annotations here avoid ``X | Y`` because msgspec evaluates them at run time
and the board runs Python 3.9 (hence no ``from __future__ import annotations`` in modules that
declare sections: linters targeting 3.9 then flag an ``X | Y`` there).
"""

import math
import re
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar, Union

import msgspec
from msgspec import Meta, field  # re-exported: sections import their vocabulary from here
from msgspec import inspect as mi

__all__ = [
    "Meta",
    "NonEmpty",
    "OneOf",
    "Required",
    "SchemaError",
    "Section",
    "Violation",
    "convert",
    "field",
    "replace",
]

T = TypeVar("T")


class SchemaError(ValueError):
    """Default error of :func:`convert` when the caller passes no class of its own."""


class OneOf:
    """Field marker: the value must be in ``choices`` (looked up at validation time, so a
    registry that grows after import — a codec registered by a plugin — is honoured)."""

    def __init__(self, choices: Collection[str]) -> None:
        self.choices = choices

    def problem(self, value: Any) -> Optional[str]:
        if value is None or value in self.choices:
            return None
        return f"must be one of {', '.join(self.choices)}; got {_show(value)}"


class Required:
    """Field marker: the document must give this key, although the field has a default.

    For tables built positionally in code (``HeadSection(name, model, manifest)``), where a
    required field may not follow one with a default.
    """

    def problem(self, value: Any) -> Optional[str]:
        return _MISSING if value is None else None


_MISSING = "is missing"


class NonEmpty:
    """Field marker: a string or path that must not be empty."""

    def problem(self, value: Any) -> Optional[str]:
        return "must be a non-empty string, got ''" if value == "" else None


# "field: problem" -- readable as is for a section built in code, and joined to the table's
# path by convert() (msgspec's own messages never start with a bare name and a colon).
_FIELD_PROBLEM = re.compile(r"^(?P<field>[A-Za-z_][A-Za-z0-9_\[\].]*): (?P<problem>.*)$", re.S)


class _FieldProblem(ValueError):
    """A rule broken by one field; msgspec appends the table's path, :func:`convert` joins."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every declared table: frozen, unknown keys refused, markers and finiteness
    checked after msgspec has checked types and bounds, then :meth:`check`."""

    def __post_init__(self) -> None:
        for name, markers, is_float in _rules(type(self)):
            value = getattr(self, name)
            if is_float and isinstance(value, float) and not math.isfinite(value):
                raise self.invalid(name, f"must be a finite number, got {value}")
            for marker in markers:
                problem = marker.problem(value)
                if problem:
                    raise self.invalid(name, problem)
        self.check()

    def check(self) -> None:
        """Rules across several keys of this table; raise :meth:`invalid` (default: none)."""

    @staticmethod
    def invalid(name: str, problem: str) -> ValueError:
        """An error for key ``name`` of this table; :func:`convert` names it by its path."""
        return _FieldProblem(name, problem)

    @staticmethod
    def missing(name: str, hint: str = "") -> ValueError:
        """A key this table needs (when a required field cannot be declared as one)."""
        return _FieldProblem(name, _MISSING + (f" ({hint})" if hint else ""))

    def _set(self, name: str, value: Any) -> None:
        """Fill a derived default (a manifest next to its model) while validating."""
        msgspec.structs.force_setattr(self, name, value)


_RULES: dict[type, list[tuple[str, tuple[Any, ...], bool]]] = {}


def _rules(cls: type) -> list[tuple[str, tuple[Any, ...], bool]]:
    """(field, markers, holds-a-float) per field of ``cls``, read once from its annotations."""
    rules = _RULES.get(cls)
    if rules is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        rules = []
        for name in cls.__struct_fields__:  # type: ignore[attr-defined]
            hint = hints[name]
            markers = tuple(
                m for m in _metadata(hint) if isinstance(m, (OneOf, NonEmpty, Required))
            )
            rules.append((name, markers, _holds_float(hint)))
        _RULES[cls] = rules
    return rules


def _metadata(hint: Any) -> list[Any]:
    found: list[Any] = []
    if typing.get_origin(hint) is typing.Annotated:
        found.extend(hint.__metadata__)
        hint = typing.get_args(hint)[0]
    for arg in typing.get_args(hint) if typing.get_origin(hint) is typing.Union else ():
        found.extend(_metadata(arg))
    return found


def _holds_float(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        return _holds_float(typing.get_args(hint)[0])
    if typing.get_origin(hint) is typing.Union:
        return any(_holds_float(a) for a in typing.get_args(hint))
    return hint is float


def replace(obj: T, **changes: Any) -> T:
    """A copy of a section with some fields changed (``dataclasses.replace`` for sections)."""
    return msgspec.structs.replace(obj, **changes)  # type: ignore[type-var]


# --------------------------------------------------------------------------- converting


class Violation:
    """One broken rule, for callers that raise their own typed errors (a HELLO field over its
    bound is ``FieldTooLong``): the dotted ``key``, the worded ``message``, and for a string or
    collection over its ``max_length`` the ``length`` and the ``limit``."""

    def __init__(
        self, key: str, message: str, length: Optional[int] = None, limit: Optional[int] = None
    ) -> None:
        self.key = key
        self.message = message
        self.length = length
        self.limit = limit

    def __repr__(self) -> str:
        return f"Violation({self.key!r}, {self.message!r})"


def convert(
    data: Any,
    cls: type[T],
    *,
    error: type[Exception] = SchemaError,
    base: Optional[Path] = None,
    where: str = "",
    on_error: Optional[Callable[[Violation], Exception]] = None,
) -> T:
    """``data`` (a parsed TOML/JSON document) checked against ``cls``; every problem raises
    ``error`` naming the key by its dotted path (or whatever ``on_error`` makes of it).

    ``base`` anchors relative :class:`~pathlib.Path` fields (a config directory moves as a
    unit; ``~`` expands); without it paths stay as written. ``where`` prefixes every key
    (``"camera.params"`` when the document is a sub-table).
    """
    info = mi.type_info(cls)
    problem = _check_unknown(data, info, [], where)
    if problem is None:
        try:
            return msgspec.convert(data, cls, dec_hook=_path_hook(base))
        except msgspec.ValidationError as exc:
            problem = _explain(str(exc), data, info, where)
    raise (on_error(problem) if on_error is not None else error(problem.message)) from None


def _path_hook(base: Optional[Path]) -> Callable[[type, Any], Any]:
    def hook(tp: type, value: Any) -> Any:
        if tp is Path:
            if not isinstance(value, str):
                raise TypeError(f"must be a path string, got {_show(value)}")
            if not value:
                raise ValueError("must be a non-empty path, got ''")
            path = Path(value).expanduser()
            return path if base is None or path.is_absolute() else base / path
        raise NotImplementedError(tp)

    return hook


def _check_unknown(data: Any, info: Any, path: list[Any], where: str) -> Optional[Violation]:
    """Unknown keys everywhere, dataclass tables included (msgspec checks only Structs), with
    the first one in sorted order named together with the allowed keys."""
    info = _strip(info)
    if isinstance(info, mi.UnionType):
        for member in info.types:
            if _kind_matches(member, data):
                return _check_unknown(data, member, path, where)
        return None
    found: Optional[Violation] = None
    if isinstance(info, (mi.StructType, mi.DataclassType)) and isinstance(data, Mapping):
        fields = {f.encode_name: f for f in info.fields}
        unknown = sorted(str(k) for k in data if k not in fields)
        if unknown:
            key = _dotted(where, [*path, unknown[0]])
            return Violation(
                key, f"unknown key {_show(key)} (allowed: {', '.join(sorted(fields))})"
            )
        for key, value in data.items():
            found = found or _check_unknown(value, fields[key].type, [*path, key], where)
    elif isinstance(info, (mi.ListType, mi.VarTupleType)) and isinstance(data, list):
        for i, item in enumerate(data):
            found = found or _check_unknown(item, info.item_type, [*path, i], where)
    elif isinstance(info, mi.DictType) and isinstance(data, Mapping):
        for key, value in data.items():
            found = found or _check_unknown(value, info.value_type, [*path, key], where)
    return found


_AT = re.compile(r"^(?P<message>.*?)(?: - at (?P<dict_key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|(\[\.\.\.\])")


def _explain(text: str, data: Any, info: Any, where: str) -> Violation:
    """msgspec's ``Expected `int` >= 1 - at `$.server.window``` as ``server.window must be
    >= 1, got 0``."""
    m = _AT.match(text)
    message = m.group("message") if m else text
    path: list[Any] = []
    for name, index, some_entry in _PATH_PART.findall((m.group("path") if m else "") or ""):
        if some_entry:  # msgspec does not say which entry of a table: find it
            path.append(_failing_entry(data, info, path, keys=False))
        else:
            path.append(int(index) if index else name)
    own = _FIELD_PROBLEM.match(message)
    if own:  # a marker, finiteness or check(): the table's path plus the field
        key = _dotted(where, [*path, own.group("field")])
        if own.group("problem").startswith(_MISSING):
            rest = own.group("problem")[len(_MISSING) :]
            return Violation(key, f"missing key {key!r}{rest}")
        return Violation(key, f"{key} {own.group('problem')}")
    missing = re.match(r"Object missing required field `(.+)`", message)
    if missing:
        key = _dotted(where, [*path, missing.group(1)])
        return Violation(key, f"missing key {key!r}")
    if m and m.group("dict_key"):  # a key of a free-form table broke the key type
        bad = _failing_entry(data, info, path, keys=True)
        key = f"{_dotted(where, path)} key"
        target = _type_at(info, path)
        key_type = _strip(target).key_type if isinstance(_strip(target), mi.DictType) else None
        return _value_violation(key, key_type, bad)
    key = _dotted(where, path)
    if message.startswith("must "):  # raised by the path hook
        return Violation(key, f"{key} {message}")
    found, value = _lookup(data, path)
    target = _type_at(info, path)
    if not found or target is None:
        return Violation(key, f"{key or 'the config'}: {message}")
    if isinstance(_strip(target), (mi.StructType, mi.DataclassType)):
        what = repr(key) if key else "the config"
        if not isinstance(value, Mapping):
            return Violation(key, f"{what} must be a table, got {type(value).__name__}")
        return Violation(key, f"{what}: {message}")  # a dataclass's own check, worded already
    return _value_violation(key, target, value)


def _value_violation(key: str, target: Any, value: Any) -> Violation:
    limit = _max_length(target, value)
    if limit is not None:
        unit = "characters" if isinstance(value, str) else "entries"
        return Violation(
            key, f"{key} is {len(value)} {unit}, at most {limit} allowed", len(value), limit
        )
    return Violation(key, f"{key} {_rule(target, value)}")


def _max_length(info: Any, value: Any) -> Optional[int]:
    """The ``max_length`` that ``value`` exceeds, if that is what it broke."""
    info = _strip(info)
    members = info.types if isinstance(info, mi.UnionType) else (info,)
    for member in map(_strip, members):
        limit = getattr(member, "max_length", None)
        if limit is not None and _kind_matches(member, value) and len(value) > limit:
            return limit
    return None


def _failing_entry(data: Any, info: Any, path: list[Any], *, keys: bool) -> Any:
    """The first key of the table at ``path`` whose key (or value) breaks the declared type."""
    found, table = _lookup(data, path)
    target = _strip(_type_at(info, path))
    if not found or not isinstance(table, Mapping) or not isinstance(target, mi.DictType):
        return "..."
    for k, v in table.items():
        try:
            if keys:
                msgspec.convert(k, _python_type(target.key_type))
            else:
                msgspec.convert(v, _python_type(target.value_type))
        except (msgspec.ValidationError, TypeError):
            return k
    return "..."


def _python_type(info: Any) -> Any:
    """A checkable type for a type-info node (only what free-form tables hold)."""
    info_s = _strip(info)
    meta = {
        k: getattr(info_s, k)
        for k in ("ge", "gt", "le", "lt", "min_length", "max_length")
        if getattr(info_s, k, None) is not None
    }
    if isinstance(info_s, mi.UnionType):
        return Union[tuple(_python_type(t) for t in info_s.types)]  # type: ignore[return-value]
    base = {
        mi.StrType: str,
        mi.IntType: int,
        mi.FloatType: float,
        mi.BoolType: bool,
        mi.NoneType: type(None),
        mi.AnyType: Any,
    }.get(type(info_s), Any)
    return Annotated[base, Meta(**meta)] if meta else base


def _rule(info: Any, value: Any) -> str:
    """What ``value`` broke: the kind when it has the wrong type, else the bound."""
    info = _strip(info)
    if isinstance(info, mi.LiteralType):
        return f"must be one of {', '.join(map(str, info.values))}; got {_show(value)}"
    if isinstance(info, mi.UnionType):
        members = [t for t in map(_strip, info.types) if not isinstance(t, mi.NoneType)]
        matching = [t for t in members if _kind_matches(t, value)]
        if len(matching) == 1 and len(members) > 1:
            return _rule(matching[0], value)
        if len(members) == 1:
            return _rule(members[0], value)
        return f"must be {' or '.join(_kind(t) for t in members)}, got {_show(value)}"
    if not _kind_matches(info, value):
        return f"must be {_kind(info)}, got {_show(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value}"
    pattern = getattr(info, "pattern", None)
    if pattern is not None and isinstance(value, str) and not re.search(pattern, value):
        return f"must match {pattern}, got {_show(value)}"
    bound = _bound(info)
    if bound:
        return f"must be {bound}, got {_show(value)}"
    return f"must be {_kind(info)}, got {_show(value)}"


def _bound(info: Any) -> str:
    lo = getattr(info, "ge", None)
    hi = getattr(info, "le", None)
    above = getattr(info, "gt", None)
    below = getattr(info, "lt", None)
    if lo is not None and hi is not None and above is None and below is None:
        return f"in [{lo}, {hi}]"
    parts = [
        f">= {lo}" if lo is not None else "",
        f"> {above}" if above is not None else "",
        f"<= {hi}" if hi is not None else "",
        f"< {below}" if below is not None else "",
    ]
    return " and ".join(p for p in parts if p)


def _kind(info: Any) -> str:
    info = _strip(info)
    if isinstance(info, mi.IntType):
        return "an integer"
    if isinstance(info, mi.FloatType):
        return "a number"
    if isinstance(info, mi.BoolType):
        return "true or false"
    if isinstance(info, mi.StrType):
        return "a non-empty string" if info.min_length else "a string"
    if isinstance(info, (mi.StructType, mi.DataclassType, mi.DictType)):
        return "a table"
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.TupleType)):
        item = getattr(info, "item_type", None)
        items = f" of {_plural(item)}" if item is not None else ""
        size = getattr(info, "min_length", None)
        if size and size == getattr(info, "max_length", None):
            return f"an array of {size}{items[3:] if items else ' entries'}"
        return f"{'a non-empty' if getattr(info, 'min_length', None) else 'an'} array{items}"
    if isinstance(info, mi.CustomType) and info.cls is Path:
        return "a path"
    if isinstance(info, mi.LiteralType):
        return f"one of {', '.join(map(str, info.values))}"
    if isinstance(info, mi.UnionType):
        return " or ".join(_kind(t) for t in info.types if not isinstance(t, mi.NoneType))
    return "a valid value"


def _plural(info: Any) -> str:
    kind = _kind(info)
    return {"a table": "tables", "a string": "strings", "an integer": "integers"}.get(
        kind, "numbers" if kind == "a number" else kind
    )


def _kind_matches(info: Any, value: Any) -> bool:
    """Whether ``value`` has the TOML kind ``info`` wants (a bool is never a number)."""
    info = _strip(info)
    if isinstance(info, mi.BoolType):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return isinstance(info, mi.AnyType)
    if isinstance(info, mi.IntType):
        return isinstance(value, int)
    if isinstance(info, mi.FloatType):
        return isinstance(value, (int, float))
    if isinstance(info, (mi.StrType, mi.LiteralType)) or (
        isinstance(info, mi.CustomType) and info.cls is Path
    ):
        return isinstance(value, str)
    if isinstance(info, (mi.StructType, mi.DataclassType, mi.DictType)):
        return isinstance(value, Mapping)
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.TupleType)):
        return isinstance(value, (list, tuple))
    if isinstance(info, mi.NoneType):
        return value is None
    return True


def _strip(info: Any) -> Any:
    while isinstance(info, mi.Metadata):
        info = info.type
    return info


def _type_at(info: Any, path: list[Any]) -> Any:
    """The declared type at ``path`` inside ``info`` (None when the path leaves it)."""
    for part in path:
        info = _strip(info)
        if isinstance(info, mi.UnionType):
            want_index = isinstance(part, int)
            for member in map(_strip, info.types):
                if want_index == isinstance(
                    member, (mi.ListType, mi.VarTupleType, mi.TupleType)
                ) and not isinstance(member, mi.NoneType):
                    info = member
                    break
            else:
                return None
        if isinstance(info, (mi.StructType, mi.DataclassType)):
            fields = {f.encode_name: f.type for f in info.fields}
            if part not in fields:
                return None
            info = fields[part]
        elif isinstance(info, mi.DictType):
            info = info.value_type
        elif isinstance(info, (mi.ListType, mi.VarTupleType)):
            info = info.item_type
        elif isinstance(info, mi.TupleType) and isinstance(part, int):
            info = info.item_types[part]
        else:
            return None
    return info


def _lookup(data: Any, path: list[Any]) -> tuple[bool, Any]:
    for part in path:
        in_array = isinstance(data, (list, tuple)) and isinstance(part, int) and part < len(data)
        in_table = isinstance(data, Mapping) and isinstance(part, str) and part in data
        if not (in_array or in_table):
            return False, None
        data = data[part]
    return True, data


def _dotted(where: str, path: list[Any]) -> str:
    text = where
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _show(value: Any, limit: int = 60) -> str:
    """A value for an error message, cut short so a whole table cannot flood a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
