"""A reader for Qt's binary resource bundles (``.rcc``, magic ``qres``), no Qt needed.

Why: GCompris ships ~200 real photos (animals, monuments, instruments, objects) only inside
``usr/share/gcompris-qt/rcc/*.rcc``; reading the bundle directly keeps the photo corpus
free of a Qt install. Written from the layout of Qt's ``rcc --binary`` output:

* header, big-endian: ``b"qres"``, format version (u32), tree offset, data offset, names
  offset (u32 each), and from version 3 on a u32 of overall flags;
* tree: entry i sits at ``tree + i * entry_size`` (22 bytes from version 2 on, 14 in
  version 1, which has no modification time); entry 0 is the root directory. An entry is
  name offset (u32), flags (u16), then either (directory, flag 2) child count (u32) and the
  index of the first child (u32), or (file) territory (u16), language (u16) and data offset
  (u32); then the modification time (u64, version >= 2);
* names: u16 length in UTF-16 code units, u32 hash, the name in UTF-16BE;
* data: u32 stored length, then the bytes; flag 1 = zlib (``qCompress``: a u32 big-endian
  uncompressed length, then a zlib stream), flag 4 = a zstd frame.

Every offset is bounds-checked: a damaged bundle raises ``QresError`` naming what is wrong,
never an IndexError or a silent short read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"qres"
FLAG_ZLIB = 0x01
FLAG_DIRECTORY = 0x02
FLAG_ZSTD = 0x04
_MAX_DEPTH = 64


class QresError(ValueError):
    """The bytes are not a readable Qt resource bundle (the message says where and why)."""


@dataclass(frozen=True)
class QresFile:
    """One file of a bundle: its path inside it and where its stored bytes sit."""

    path: str
    flags: int
    data_offset: int  # relative to the bundle's data section

    @property
    def compression(self) -> str:
        if self.flags & FLAG_ZSTD:
            return "zstd"
        return "zlib" if self.flags & FLAG_ZLIB else "none"


class QresArchive:
    """The files of one ``.rcc`` bundle; ``files()`` lists them, ``read(f)`` returns the bytes."""

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self.data = data
        self.source = source
        if len(data) < 20 or data[:4] != MAGIC:
            raise QresError(f"{source}: not a Qt resource bundle (no 'qres' header)")
        self.version, self.tree, self.payload, self.names = struct.unpack_from(">4I", data, 4)
        if self.version not in (1, 2, 3):
            raise QresError(f"{source}: unsupported rcc format version {self.version} (1-3 known)")
        self.overall_flags = self._u32(20, "header flags") if self.version >= 3 else 0
        self.entry_size = 14 if self.version == 1 else 22
        for name, off in (("tree", self.tree), ("data", self.payload), ("names", self.names)):
            if off >= len(data):
                raise QresError(f"{source}: {name} offset {off} is past the end ({len(data)} B)")

    @classmethod
    def open(cls, path: str | Path) -> QresArchive:
        return cls(Path(path).read_bytes(), str(path))

    # -- low-level reads, all bounds-checked
    def _unpack(self, fmt: str, offset: int, what: str) -> tuple:
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self.data):
            raise QresError(f"{self.source}: {what} at offset {offset} runs past the end")
        return struct.unpack_from(fmt, self.data, offset)

    def _u32(self, offset: int, what: str) -> int:
        return self._unpack(">I", offset, what)[0]

    def _name(self, name_offset: int) -> str:
        at = self.names + name_offset
        (length,) = self._unpack(">H", at, "name length")
        end = at + 6 + 2 * length
        if end > len(self.data):
            raise QresError(f"{self.source}: name at offset {at} runs past the end")
        return self.data[at + 6 : end].decode("utf-16-be")

    def _entry(self, index: int) -> tuple[str, int, int, int]:
        """(name, flags, a, b): a/b = child count/first child (dirs) or 0/data offset (files)."""
        at = self.tree + index * self.entry_size
        name_off, flags = self._unpack(">IH", at, f"tree entry {index}")
        if flags & FLAG_DIRECTORY:
            count, first = self._unpack(">II", at + 6, f"tree entry {index}")
            return ("" if index == 0 else self._name(name_off)), flags, count, first
        (data_off,) = self._unpack(">I", at + 10, f"tree entry {index}")
        return self._name(name_off), flags, 0, data_off

    # -- public API
    def files(self) -> list[QresFile]:
        """Every file in the bundle, as ``dir/sub/name`` paths, in tree order."""
        return list(self._walk(0, "", 0, set()))

    def _walk(self, index: int, prefix: str, depth: int, seen: set[int]) -> Iterator[QresFile]:
        if depth > _MAX_DEPTH or index in seen:
            raise QresError(
                f"{self.source}: directory tree loops or nests deeper than {_MAX_DEPTH}"
            )
        seen.add(index)
        name, flags, count, first = self._entry(index)
        path = f"{prefix}/{name}" if prefix else name
        if not flags & FLAG_DIRECTORY:
            yield QresFile(path, flags, first)
            return
        for child in range(first, first + count):
            yield from self._walk(child, path, depth + 1, seen)

    def read(self, f: QresFile) -> bytes:
        """The file's content, decompressed."""
        at = self.payload + f.data_offset
        size = self._u32(at, f"data length of {f.path}")
        if at + 4 + size > len(self.data):
            raise QresError(f"{self.source}: data of {f.path} ({size} B) runs past the end")
        blob = self.data[at + 4 : at + 4 + size]
        if f.flags & FLAG_ZSTD:
            return self._zstd(f, blob)
        if f.flags & FLAG_ZLIB:
            if size < 4:
                raise QresError(f"{self.source}: zlib data of {f.path} has no length prefix")
            expected = struct.unpack_from(">I", blob)[0]
            try:
                out = zlib.decompress(blob[4:])
            except zlib.error as exc:
                raise QresError(f"{self.source}: cannot inflate {f.path}: {exc}") from None
            if len(out) != expected:
                raise QresError(
                    f"{self.source}: {f.path} inflated to {len(out)} B, prefix says {expected}"
                )
            return out
        return blob

    def _zstd(self, f: QresFile, blob: bytes) -> bytes:
        import zstandard

        try:
            return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 30)
        except zstandard.ZstdError as exc:
            raise QresError(f"{self.source}: cannot decompress zstd {f.path}: {exc}") from None

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for f in self.files():
            yield f.path, self.read(f)
