"""Strict reading of one TOML table: the checks behind ``device.toml`` and ``server.toml``.

Why one module: the board daemon and the tail server both promise that a config is validated
once, at the edge, and that every mistake is an error naming the key by its dotted path
(``server.window``, ``models[0].max_batch``). Two hand-written validators had drifted apart
in wording and in what they told the user (only one listed the allowed keys, neither refused
a NaN timeout); one shared reader keeps the promise the same on both sides of the link. It
lives in ``wire`` because that is the one package both import, and it needs nothing but the
standard library.

How it is used: a section function takes a :class:`TomlTable`, reads each key once with a
typed accessor (which records the key as known), builds its dataclass, and calls
:meth:`TomlTable.finish`; any key it did not read is then an unknown key. Each config module
passes its own exception class, so callers keep catching ``device.config.ConfigError`` or
``server.config.ConfigError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class TableError(ValueError):
    """Default error of a :class:`TomlTable` whose owner did not pass its own class."""


class _Required:
    """Sentinel default: the key must be present."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

# How a Python type is spelled in messages (TOML's words, not Python's).
_KIND_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


def _kinds_text(kinds: tuple[type, ...]) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


def _show(value: Any, limit: int = 60) -> str:
    """A value for an error message, cut short so a whole table cannot flood a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TomlTable:
    """One TOML table being validated; remembers which keys were read.

    ``where`` is the dotted path of the table (``""`` for the document itself), used to name
    keys in errors; ``error`` is the exception class every problem is raised as.
    """

    def __init__(self, data: Any, where: str = "", *, error: type[Exception] = TableError) -> None:
        if not isinstance(data, Mapping):
            what = repr(where) if where else "the config"
            raise error(f"{what} must be a table, got {type(data).__name__}")
        self.data = data
        self.where = where
        self.error = error
        self.used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def key(self, name: str) -> str:
        """The dotted path of ``name`` in this table."""
        return f"{self.where}.{name}" if self.where else name

    def invalid(self, name: str, problem: str) -> Exception:
        """An error for a rule the typed accessors cannot express (cross-key checks)."""
        return self.error(f"{self.key(name)} {problem}")

    # --- typed accessors ---------------------------------------------------------------------

    def get(self, name: str, kinds: type | tuple[type, ...], default: Any) -> Any:
        """The raw value of ``name`` if it is one of ``kinds``; ``default`` when absent.

        For free-form values (``params`` tables passed on to a driver) and unions such as
        ``int | str``. TOML integers are accepted where a float is, booleans never count as
        numbers (Python's ``bool`` is an ``int``, TOML's is not).
        """
        self.used.add(name)
        if name not in self.data:
            return self._absent(name, default)
        value = self.data[name]
        kinds_t = kinds if isinstance(kinds, tuple) else (kinds,)
        if isinstance(value, bool) and bool not in kinds_t:
            raise self.invalid(name, f"must be {_kinds_text(kinds_t)}, got {_show(value)}")
        if float in kinds_t and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds_t):
            raise self.invalid(name, f"must be {_kinds_text(kinds_t)}, got {_show(value)}")
        return value

    def integer(
        self, name: str, default: Any, *, lo: int | None = None, hi: int | None = None
    ) -> Any:
        """An integer within ``[lo, hi]`` (either bound optional)."""
        value = self.get(name, int, default)
        if name in self.data:
            self._check_bounds(name, value, lo=lo, hi=hi, above=None)
        return value

    def number(
        self,
        name: str,
        default: Any,
        *,
        lo: float | None = None,
        hi: float | None = None,
        above: float | None = None,
    ) -> Any:
        """A finite float (an integer is accepted); ``lo``/``hi`` inclusive, ``above`` strict.

        NaN and infinity are refused: TOML allows them, but a ``nan`` timeout compares false
        with everything and silently disables the check it configures.
        """
        value = self.get(name, float, default)
        if name in self.data:
            if not math.isfinite(value):
                raise self.invalid(name, f"must be a finite number, got {value}")
            self._check_bounds(name, value, lo=lo, hi=hi, above=above)
        return value

    def boolean(self, name: str, default: Any) -> Any:
        return self.get(name, bool, default)

    def string(
        self,
        name: str,
        default: Any,
        *,
        choices: tuple[str, ...] | None = None,
        nonempty: bool = False,
    ) -> Any:
        """A string, optionally one of ``choices`` or required to be non-empty."""
        value = self.get(name, str, default)
        if name not in self.data:
            return value
        if nonempty and not value:
            raise self.invalid(name, "must be a non-empty string, got ''")
        if choices is not None and value not in choices:
            raise self.invalid(name, f"must be one of {', '.join(choices)}; got {_show(value)}")
        return value

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """A non-empty array of strings; a single string is accepted as a one-element array."""
        self.used.add(name)
        if name not in self.data:
            return self._absent(name, default)
        value = self.data[name]
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(v, str) for v in value)
        ):
            raise self.invalid(
                name, f"must be a string or a non-empty array of strings, got {_show(value)}"
            )
        return tuple(value)

    def path(self, name: str, base: Path, default: Any = None) -> Any:
        """A file-system path; relative ones resolve against ``base`` (the config's folder,
        so a config directory can be moved as a unit), ``~`` expands."""
        value = self.get(name, str, default)
        if name not in self.data:
            return value
        if not value:
            raise self.invalid(name, "must be a non-empty path, got ''")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path

    # --- nesting -----------------------------------------------------------------------------

    def table(self, name: str) -> TomlTable:
        """The sub-table ``name`` (an empty one when absent, so every default applies)."""
        self.used.add(name)
        return TomlTable(self.data.get(name, {}), self.key(name), error=self.error)

    def tables(self, name: str, *, single_ok: bool = False) -> list[TomlTable]:
        """The array of tables ``[[name]]`` (empty when absent), each named ``name[i]``.

        ``single_ok`` also accepts one plain ``[name]`` table, as a one-element array.
        """
        self.used.add(name)
        raw = self.data.get(name, [])
        if single_ok and isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list):
            raise self.error(
                f"{self.key(name)!r} must be an array of tables ([[{name}]]), "
                f"got {type(raw).__name__}"
            )
        return [
            TomlTable(item, f"{self.key(name)}[{i}]", error=self.error)
            for i, item in enumerate(raw)
        ]

    def finish(self) -> None:
        """Every key not read by an accessor is a typo or a setting this version lacks."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(
                f"unknown config key {self.key(unknown[0])!r} "
                f"(allowed: {', '.join(sorted(self.used))})"
            )

    # --- internals ---------------------------------------------------------------------------

    def _absent(self, name: str, default: Any) -> Any:
        """``default`` for a key the document leaves out, unless it is :data:`REQUIRED`."""
        if default is REQUIRED:
            raise self.error(f"missing key {self.key(name)!r}")
        return default

    def _check_bounds(
        self,
        name: str,
        value: float,
        *,
        lo: float | None,
        hi: float | None,
        above: float | None,
    ) -> None:
        ok = (
            (lo is None or value >= lo)
            and (hi is None or value <= hi)
            and (above is None or value > above)
        )
        if ok:
            return
        parts = [
            f">= {lo}" if lo is not None else "",
            f"> {above}" if above is not None else "",
            f"<= {hi}" if hi is not None else "",
        ]
        if lo is not None and hi is not None and above is None:
            bound = f"in [{lo}, {hi}]"
        else:
            bound = " and ".join(p for p in parts if p)
        raise self.invalid(name, f"must be {bound}, got {value}")
