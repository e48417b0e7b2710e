"""A named registry: the one list a kind of plug-in (codecs, camera sources) is chosen from.

Why: a choice that is spelled out in several places (a tuple of names, an ``if`` chain that
builds the object, the config's ``choices``, a CLI's ``choices``) drifts; adding one means
editing all of them. With a registry the names are registered once, next to the thing they
name, and every other place reads :attr:`Registry.names` — a live view, so something
registered later (a plug-in, a test's toy) is accepted everywhere at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class _Names(Sequence[str]):
    """The registered names, tuple-like (``in``, indexing, ``repr``), always current."""

    def __init__(self, items: dict[str, object]) -> None:
        self._items = items

    def __getitem__(self, index):  # type: ignore[override]
        return tuple(self._items)[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._items))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return repr(tuple(self._items))


class Registry(Mapping[str, T], Generic[T]):
    """Name -> entry in registration order; read-only except through register/unregister."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self.names: Sequence[str] = _Names(self._items)

    def register(self, name: str, entry: T) -> None:
        """Add ``entry`` as ``name``; a name must be an identifier and not taken yet."""
        if not isinstance(name, str) or not name or not name.isidentifier():
            raise ValueError(f"a {self.kind} needs a name that is an identifier, got {name!r}")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plug-in unloading, a test cleaning up its toy)."""
        if self._items.pop(name, None) is None:
            raise KeyError(f"{self.kind} {name!r} is not registered")

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._items)})"
