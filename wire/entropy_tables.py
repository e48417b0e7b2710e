"""Entropy tables shared by a head and its tail: rANS frequencies or a zstd dictionary.

Why a content hash: a table-driven codec decodes garbage if the two ends hold different
tables, and the tables are too big for HELLO (kilobytes; HELLO's fields are bounded by
``wire.protocol.HELLO_LIMITS``). So the tables travel in the head and tail manifests, under
the split's ``model_id``, and HELLO names them by ``sha256`` in ``codec_params["tables"]``
(64 hex characters, exactly HELLO's string bound). A codec built from tables whose hash is
not the one named raises :class:`TablesMismatch`, and the server refuses the session.

In a manifest, ``codec.tables`` maps a kind to one table set::

    "tables": {"rans": {"bits": 1, "channels": 112, "sha256": "...", "data": "<base64>"},
               "zstd_dict": {"bits": 1, "channels": 112, "sha256": "...", "data": "<base64>"}}

``data`` is, for ``rans``, the (channels, 2**bits) uint16 little-endian frequency table
(rows summing to 4096, see ``wire.rans``) and, for ``zstd_dict``, a zstd dictionary trained
on the bit-packed codes of the training set's features (its entropy tables are what a
600-byte frame would otherwise pay for in every frame).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard

from wire.bitpack import pack_bits
from wire.errors import CodecError
from wire.rans import quantize_pmf

__all__ = [
    "TABLE_KINDS",
    "EntropyTables",
    "TablesMismatch",
    "rans_tables_from_codes",
    "rans_tables_from_pmf",
    "tables_from_json",
    "tables_to_json",
    "zstd_dict_tables_from_codes",
]

TABLE_KINDS = ("rans", "zstd_dict")
#: Largest table data a manifest may carry: 1024 channels of 256 symbols as uint16 is
#: 512 KiB; a zstd dictionary is a few KiB to ~100 KiB.
MAX_TABLE_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TablesMismatch(CodecError):
    """The tables a HELLO (or a manifest) names are not the tables this side holds."""


@dataclass(frozen=True)
class EntropyTables:
    """One table set: its kind, the bit depth and channel count it is for, and its bytes."""

    kind: str
    bits: int
    channels: int
    data: bytes

    def __post_init__(self) -> None:
        if self.kind not in TABLE_KINDS:
            raise CodecError(f"unknown table kind {self.kind!r}; expected one of {TABLE_KINDS}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise CodecError(f"table bits must be an int in 1..8, got {self.bits!r}")
        if (
            isinstance(self.channels, bool)
            or not isinstance(self.channels, int)
            or self.channels < 1
        ):
            raise CodecError(f"table channels must be a positive int, got {self.channels!r}")
        if not isinstance(self.data, bytes) or not 0 < len(self.data) <= MAX_TABLE_BYTES:
            raise CodecError(f"table data must be 1..{MAX_TABLE_BYTES} bytes")
        if self.kind == "rans":
            want = 2 * self.channels * (1 << self.bits)
            if len(self.data) != want:
                raise CodecError(f"rans tables hold {len(self.data)} bytes, expected {want}")

    @property
    def sha256(self) -> str:
        """What HELLO names: the hash of kind, bits, channels and data together."""
        h = hashlib.sha256(f"{self.kind}|{self.bits}|{self.channels}|".encode())
        h.update(self.data)
        return h.hexdigest()

    def frequencies(self) -> np.ndarray:
        """The rANS (channels, 2**bits) frequency table."""
        if self.kind != "rans":
            raise CodecError(f"{self.kind} tables hold no frequencies")
        freq = np.frombuffer(self.data, "<u2").astype(np.uint16)
        return freq.reshape(self.channels, 1 << self.bits)

    @classmethod
    def from_frequencies(cls, freq: np.ndarray, bits: int) -> EntropyTables:
        freq = np.asarray(freq)
        if freq.ndim != 2 or freq.shape[1] != 1 << bits:
            raise CodecError(f"frequencies must be (channels, {1 << bits}), got {freq.shape}")
        return cls("rans", bits, int(freq.shape[0]), freq.astype("<u2").tobytes())


def tables_to_json(tables: Mapping[str, EntropyTables]) -> dict[str, dict[str, Any]]:
    """The manifest form (``codec.tables``)."""
    return {
        kind: {
            "bits": t.bits,
            "channels": t.channels,
            "sha256": t.sha256,
            "data": base64.b64encode(t.data).decode("ascii"),
        }
        for kind, t in tables.items()
    }


def tables_from_json(value: Any) -> dict[str, EntropyTables]:
    """Parse and verify ``codec.tables``; CodecError names the kind and the problem."""
    if not isinstance(value, dict):
        raise CodecError(f"tables must be an object, got {type(value).__name__}")
    out: dict[str, EntropyTables] = {}
    for kind, entry in value.items():
        if kind not in TABLE_KINDS:
            raise CodecError(f"unknown table kind {kind!r}; expected one of {TABLE_KINDS}")
        if not isinstance(entry, dict) or set(entry) != {"bits", "channels", "sha256", "data"}:
            raise CodecError(f"tables.{kind} needs exactly bits, channels, sha256 and data")
        if not isinstance(entry["data"], str) or len(entry["data"]) > 2 * MAX_TABLE_BYTES:
            raise CodecError(f"tables.{kind}.data must be a base64 string")
        try:
            data = base64.b64decode(entry["data"], validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"tables.{kind}.data is not valid base64") from None
        sha = entry["sha256"]
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise CodecError(f"tables.{kind}.sha256 must be 64 lowercase hex digits")
        tables = EntropyTables(kind, entry["bits"], entry["channels"], data)
        if tables.sha256 != sha:
            raise TablesMismatch(f"tables.{kind}: data does not hash to the recorded sha256")
        out[kind] = tables
    return out


# ----------------------------------------------------------------------------- building


def _codes_nchw(codes: np.ndarray, bits: int) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 4 or codes.shape[0] < 1 or codes.dtype != np.uint8:
        raise CodecError(
            f"training codes must be uint8 (N, C, H, W), got {codes.dtype} {codes.shape}"
        )
    if int(codes.max()) >= 1 << bits:
        raise CodecError(f"training code {int(codes.max())} does not fit in {bits} bits")
    return codes


def rans_tables_from_pmf(pmf: np.ndarray, bits: int) -> EntropyTables:
    """rANS tables from per-channel probabilities (C, 2**bits): a learned entropy model's."""
    return EntropyTables.from_frequencies(quantize_pmf(pmf), bits)


def rans_tables_from_codes(codes: np.ndarray, bits: int) -> EntropyTables:
    """rANS tables from the per-channel histograms of training codes (N, C, H, W)."""
    codes = _codes_nchw(codes, bits)
    k = 1 << bits
    per_channel = codes.transpose(1, 0, 2, 3).reshape(codes.shape[1], -1).astype(np.int64)
    offsets = np.arange(codes.shape[1])[:, None] * k
    counts = np.bincount((per_channel + offsets).reshape(-1), minlength=codes.shape[1] * k)
    return rans_tables_from_pmf(counts.reshape(codes.shape[1], k).astype(np.float64), bits)


def zstd_dict_tables_from_codes(
    codes: np.ndarray, bits: int, size: int = 4096, level: int = 3
) -> EntropyTables:
    """A zstd dictionary trained on the bit-packed training codes (N, C, H, W).

    zstd's trainer (COVER) wants many samples; with too few (or too uniform) ones it fails,
    and then the dictionary is the most recent samples as raw content, which still primes
    the match finder but carries no entropy tables.
    """
    codes = _codes_nchw(codes, bits)
    samples = [pack_bits(c, bits) for c in codes]
    try:
        data = zstandard.train_dictionary(size, samples, level=level, threads=1).as_bytes()
    except zstandard.ZstdError:
        data = b"".join(samples)[-size:]
    return EntropyTables("zstd_dict", bits, int(codes.shape[1]), data)
