"""Manifests that travel with the two halves of a split model.

Why: the board loads ``head.tflite`` + ``head.json`` and the server loads ``tail.pt`` +
``tail.json``; they must agree on the split (``model_id``), the bottleneck shape, the
quantization and the codec, or the tail silently eats garbage. ``model_id`` is a content
hash of the split model computed at training export and carried over by the converter; the
device and server refuse to pair mismatched ids.

The JSON is validated once, here, at the edge: unknown keys, missing keys and wrong types
are ``ManifestError`` naming the file and the key (``head.json: output.scale: ...``).
Saving is atomic (temp file in the same directory, fsync, ``os.replace``), so a crash never
leaves a half-written manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

from wire.atomicfile import write_text_atomic
from wire.codecs import CODEC_NAMES, FeatureCodec, codec_class, normalize_params
from wire.entropy_tables import EntropyTables, tables_from_json
from wire.errors import CodecError, ManifestError
from wire.quant import QuantParams

HEAD_FORMAT = "splitfit-head/1"
TAIL_FORMAT = "splitfit-tail/1"
HEAD_SOURCE_FORMAT = "splitfit-head-source/1"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class TensorSpec:
    shape: list[int]
    dtype: str
    layout: str
    scale: float | None = None
    zero_point: int | None = None


@dataclass
class HeadManifest:
    """head.json, written by convert-head, read by the device."""

    model_id: str
    input: TensorSpec  # [1,H,W,3] uint8 NHWC
    output: TensorSpec  # [1,h,w,C] int8 NHWC, with scale/zero_point
    bottleneck_chw: list[int]
    normalization: dict  # {"mean": [...], "std": [...]} (folded into the tflite)
    codec: dict  # {"name": "jpeg", "bits": 8, "params": {"quality": 20}}
    labels: list[str]
    source_sha256: str
    tflite_sha256: str
    extra: dict = field(default_factory=dict)  # split info, versions, verification, op inventory

    def quant_params(self) -> QuantParams:
        """Quantization of the bottleneck on the wire: the head output's scale/zp + codec bits."""
        return QuantParams(
            float(self.output.scale), int(self.output.zero_point), int(self.codec["bits"])
        )

    def codec_tables(self) -> dict[str, EntropyTables]:
        """The entropy tables this head's table codecs use (empty when none were exported)."""
        return codec_tables(self.codec)

    def feature_codec(self) -> FeatureCodec:
        """The codec the device should use by default for this head."""
        return FeatureCodec(
            tuple(self.bottleneck_chw),
            self.quant_params(),
            self.codec["name"],
            self.codec.get("params", {}),
            tables=self.codec_tables(),
        )


@dataclass
class TailManifest:
    """tail.json, written by training export, read by the server."""

    model_id: str
    input_chw: list[int]
    num_classes: int
    labels: list[str]
    codec: dict
    split: dict
    extra: dict = field(default_factory=dict)  # accuracy measured, training config

    def codec_tables(self) -> dict[str, EntropyTables]:
        """The entropy tables the server decodes table codecs with (empty when none)."""
        return codec_tables(self.codec)


@dataclass
class HeadSourceManifest:
    """head.pt.json, written by training export next to head.pt, read by convert-head.

    Carries what the converter cannot infer from the TorchScript: model_id, the input size,
    the normalization to fold in, labels, bottleneck shape and codec defaults.
    """

    model_id: str
    input_hw: list[int]
    normalization: dict
    labels: list[str]
    bottleneck_chw: list[int]
    codec: dict
    extra: dict = field(default_factory=dict)

    def codec_tables(self) -> dict[str, EntropyTables]:
        """The entropy tables exported with this head (convert-head copies them to head.json)."""
        return codec_tables(self.codec)


# typing.Union, not ``|``: this alias is evaluated at import, and the board side runs on 3.9
Manifest = Union[HeadManifest, TailManifest, HeadSourceManifest]


# ----------------------------------------------------------------------------- validation


class _Checker:
    """Field checks that raise ManifestError naming the file and the dotted key."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, problem: str) -> ManifestError:
        return ManifestError(f"{self.where}: {key}: {problem}")

    def keys(self, d: Any, key: str, required: set[str], optional: set[str] = frozenset()):
        if not isinstance(d, dict):
            raise self.fail(key, f"expected an object, got {type(d).__name__}")
        prefix = f"{key}." if key else ""
        for k in d:
            if k not in required and k not in optional:
                raise self.fail(f"{prefix}{k}", "unknown key")
        for k in sorted(required):
            if k not in d:
                raise self.fail(f"{prefix}{k}", "missing key")

    def string(self, v: Any, key: str, nonempty: bool = True) -> str:
        if not isinstance(v, str):
            raise self.fail(key, f"expected a string, got {type(v).__name__}")
        if nonempty and not v:
            raise self.fail(key, "must not be empty")
        return v

    def integer(self, v: Any, key: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"expected an integer, got {type(v).__name__}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(key, f"{v} out of range {lo}..{hi}")
        return v

    def number(self, v: Any, key: str, positive: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(key, f"expected a finite number, got {v!r}")
        if positive and v <= 0:
            raise self.fail(key, f"must be > 0, got {v}")
        return float(v)

    def dims(self, v: Any, key: str, n: int | None = None) -> list[int]:
        if not isinstance(v, list) or not v:
            raise self.fail(key, f"expected a non-empty list of ints, got {v!r}")
        if n is not None and len(v) != n:
            raise self.fail(key, f"expected {n} dimensions, got {len(v)}")
        return [self.integer(d, f"{key}[{i}]", 1) for i, d in enumerate(v)]

    def dict_(self, v: Any, key: str) -> dict:
        if not isinstance(v, dict):
            raise self.fail(key, f"expected an object, got {type(v).__name__}")
        return v

    def labels(self, v: Any, key: str) -> list[str]:
        if not isinstance(v, list):
            raise self.fail(key, f"expected a list of strings, got {type(v).__name__}")
        return [self.string(s, f"{key}[{i}]", nonempty=False) for i, s in enumerate(v)]

    def sha256(self, v: Any, key: str) -> str:
        if not isinstance(v, str) or not _SHA256.match(v):
            raise self.fail(key, f"expected 64 lowercase hex digits, got {v!r}")
        return v

    def tensor(self, v: Any, key: str) -> TensorSpec:
        self.keys(v, key, {"shape", "dtype", "layout"}, {"scale", "zero_point"})
        scale = v.get("scale")
        zp = v.get("zero_point")
        return TensorSpec(
            shape=self.dims(v["shape"], f"{key}.shape"),
            dtype=self.string(v["dtype"], f"{key}.dtype"),
            layout=self.string(v["layout"], f"{key}.layout"),
            scale=None if scale is None else self.number(scale, f"{key}.scale", positive=True),
            zero_point=None if zp is None else self.integer(zp, f"{key}.zero_point"),
        )

    def normalization(self, v: Any, key: str) -> dict:
        self.keys(v, key, {"mean", "std"})
        out = {}
        for part in ("mean", "std"):
            vals = v[part]
            if not isinstance(vals, list) or not vals:
                raise self.fail(f"{key}.{part}", "expected a non-empty list of numbers")
            out[part] = [
                self.number(x, f"{key}.{part}[{i}]", positive=part == "std")
                for i, x in enumerate(vals)
            ]
        if len(out["mean"]) != len(out["std"]):
            raise self.fail(key, "mean and std must have the same length")
        return out

    def codec(self, v: Any, key: str) -> dict:
        self.keys(v, key, {"name", "bits"}, {"params", "tables"})
        name = self.string(v["name"], f"{key}.name")
        if name not in CODEC_NAMES:
            raise self.fail(f"{key}.name", f"unknown codec {name!r}; one of {CODEC_NAMES}")
        bits = self.integer(v["bits"], f"{key}.bits", 1, 8)
        params = self.dict_(v.get("params", {}), f"{key}.params")
        try:
            normalize_params(name, params)
        except CodecError as exc:
            raise self.fail(f"{key}.params", str(exc)) from None
        out = {"name": name, "bits": bits, "params": dict(params)}
        kind = codec_class(name).table_kind
        if "tables" not in v:
            if kind is not None:
                raise self.fail(f"{key}.tables", f"missing: codec {name!r} needs {kind} tables")
            return out
        try:
            tables = tables_from_json(v["tables"])
        except CodecError as exc:
            raise self.fail(f"{key}.tables", str(exc)) from None
        for held_kind, t in tables.items():
            if t.bits != bits:
                where = f"{key}.tables.{held_kind}.bits"
                raise self.fail(where, f"{t.bits}, but codec.bits is {bits}")
        if kind is not None:
            held = tables.get(kind)
            if held is None or held.sha256 != params.get("tables"):
                raise self.fail(
                    f"{key}.params.tables", f"names no {kind} tables carried in {key}.tables"
                )
        out["tables"] = v["tables"]
        return out


def codec_tables(codec: dict) -> dict[str, EntropyTables]:
    """``codec.tables`` of a validated manifest, parsed (hashes were checked at load)."""
    raw = codec.get("tables")
    return {} if raw is None else tables_from_json(raw)


def _head_from_dict(d: Any, ck: _Checker) -> HeadManifest:
    ck.keys(
        d,
        "",
        {
            "format",
            "model_id",
            "input",
            "output",
            "bottleneck_chw",
            "normalization",
            "codec",
            "labels",
            "source_sha256",
            "tflite_sha256",
        },
        {"extra"},
    )
    _format(d, HEAD_FORMAT, ck)
    m = HeadManifest(
        model_id=ck.string(d["model_id"], "model_id"),
        input=ck.tensor(d["input"], "input"),
        output=ck.tensor(d["output"], "output"),
        bottleneck_chw=ck.dims(d["bottleneck_chw"], "bottleneck_chw", 3),
        normalization=ck.normalization(d["normalization"], "normalization"),
        codec=ck.codec(d["codec"], "codec"),
        labels=ck.labels(d["labels"], "labels"),
        source_sha256=ck.sha256(d["source_sha256"], "source_sha256"),
        tflite_sha256=ck.sha256(d["tflite_sha256"], "tflite_sha256"),
        extra=ck.dict_(d.get("extra", {}), "extra"),
    )
    out = m.output
    if out.scale is None or out.zero_point is None:
        raise ck.fail("output", "the int8 head output needs scale and zero_point")
    ck.integer(out.zero_point, "output.zero_point", -128, 127)
    if out.layout == "NHWC" and len(out.shape) == 4:
        c, h, w = m.bottleneck_chw
        if out.shape[1:] != [h, w, c]:
            raise ck.fail("bottleneck_chw", f"{m.bottleneck_chw} disagrees with output.shape")
    return m


def _tail_from_dict(d: Any, ck: _Checker) -> TailManifest:
    ck.keys(
        d,
        "",
        {"format", "model_id", "input_chw", "num_classes", "labels", "codec", "split"},
        {"extra"},
    )
    _format(d, TAIL_FORMAT, ck)
    m = TailManifest(
        model_id=ck.string(d["model_id"], "model_id"),
        input_chw=ck.dims(d["input_chw"], "input_chw", 3),
        num_classes=ck.integer(d["num_classes"], "num_classes", 1),
        labels=ck.labels(d["labels"], "labels"),
        codec=ck.codec(d["codec"], "codec"),
        split=ck.dict_(d["split"], "split"),
        extra=ck.dict_(d.get("extra", {}), "extra"),
    )
    if m.labels and len(m.labels) != m.num_classes:
        raise ck.fail("labels", f"{len(m.labels)} labels for num_classes={m.num_classes}")
    return m


def _head_source_from_dict(d: Any, ck: _Checker) -> HeadSourceManifest:
    ck.keys(
        d,
        "",
        {"format", "model_id", "input_hw", "normalization", "labels", "bottleneck_chw", "codec"},
        {"extra"},
    )
    _format(d, HEAD_SOURCE_FORMAT, ck)
    return HeadSourceManifest(
        model_id=ck.string(d["model_id"], "model_id"),
        input_hw=ck.dims(d["input_hw"], "input_hw", 2),
        normalization=ck.normalization(d["normalization"], "normalization"),
        labels=ck.labels(d["labels"], "labels"),
        bottleneck_chw=ck.dims(d["bottleneck_chw"], "bottleneck_chw", 3),
        codec=ck.codec(d["codec"], "codec"),
        extra=ck.dict_(d.get("extra", {}), "extra"),
    )


def _format(d: dict, expected: str, ck: _Checker) -> None:
    if d["format"] != expected:
        raise ck.fail("format", f"expected {expected!r}, got {d['format']!r}")


_PARSERS = {
    HeadManifest: (HEAD_FORMAT, _head_from_dict),
    TailManifest: (TAIL_FORMAT, _tail_from_dict),
    HeadSourceManifest: (HEAD_SOURCE_FORMAT, _head_source_from_dict),
}


# ----------------------------------------------------------------------------- I/O


def _read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{p}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{p}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: not valid JSON: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{p}: JSON nested too deeply") from None


def load_head_manifest(path: str | os.PathLike) -> HeadManifest:
    return _head_from_dict(_read_json(path), _Checker(str(path)))


def load_tail_manifest(path: str | os.PathLike) -> TailManifest:
    return _tail_from_dict(_read_json(path), _Checker(str(path)))


def load_head_source_manifest(path: str | os.PathLike) -> HeadSourceManifest:
    return _head_source_from_dict(_read_json(path), _Checker(str(path)))


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    """JSON-ready dict with the ``format`` key first; validated like a loaded file."""
    try:
        fmt, parse = _PARSERS[type(manifest)]
    except KeyError:
        raise ManifestError(f"not a manifest: {type(manifest).__name__}") from None
    d = {"format": fmt, **asdict(manifest)}
    parse(json.loads(json.dumps(d)), _Checker(f"<{type(manifest).__name__}>"))
    return d


def save_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    """Validate and write atomically: readers see the old file or the new one, never half."""
    d = manifest_to_dict(manifest)
    text = json.dumps(d, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed (model files can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
