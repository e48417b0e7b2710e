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

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from wire.atomicfile import write_text_atomic
from wire.codecs import CODEC_NAMES, FeatureCodec, codec_class, normalize_params
from wire.entropy_tables import EntropyTables, tables_from_json
from wire.errors import CodecError, ManifestError
from wire.quant import QuantParams
from wire.schema import Meta, OneOf, Section, Violation, convert, field

HEAD_FORMAT = "splitfit-head/1"
TAIL_FORMAT = "splitfit-tail/1"
HEAD_SOURCE_FORMAT = "splitfit-head-source/1"

PathLike = Union[str, os.PathLike]


@dataclass
class TensorSpec:
    shape: list[int]
    dtype: str
    layout: str
    scale: Optional[float] = None
    zero_point: Optional[int] = None


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
    extra: dict = dc_field(default_factory=dict)  # split info, versions, verification, op inventory

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
    extra: dict = dc_field(default_factory=dict)  # accuracy measured, training config

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
    extra: dict = dc_field(default_factory=dict)

    def codec_tables(self) -> dict[str, EntropyTables]:
        """The entropy tables exported with this head (convert-head copies them to head.json)."""
        return codec_tables(self.codec)


# typing.Union, not ``|``: this alias is evaluated at import, and the board side runs on 3.9
Manifest = Union[HeadManifest, TailManifest, HeadSourceManifest]


# ----------------------------------------------------------------------------- validation
# Each JSON shape declared once as a wire.schema Section (types, bounds, unknown keys refused);
# rules across keys in ``check()``. The dataclasses above stay the values callers build.

_Dim = Annotated[int, Meta(ge=1)]
_Dims = Annotated[list[_Dim], Meta(min_length=1)]
_Dims2 = Annotated[list[_Dim], Meta(min_length=2, max_length=2)]
_Dims3 = Annotated[list[_Dim], Meta(min_length=3, max_length=3)]
_Name = Annotated[str, Meta(min_length=1)]
_Sha256 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]


class _Tensor(Section):
    shape: _Dims
    dtype: _Name
    layout: _Name
    scale: Optional[Annotated[float, Meta(gt=0)]] = None
    zero_point: Optional[int] = None

    def spec(self) -> TensorSpec:
        return TensorSpec(list(self.shape), self.dtype, self.layout, self.scale, self.zero_point)


class _Normalization(Section):
    mean: Annotated[list[float], Meta(min_length=1)]
    std: Annotated[list[Annotated[float, Meta(gt=0)]], Meta(min_length=1)]

    def check(self) -> None:
        if len(self.mean) != len(self.std):
            raise self.invalid("std", f"has {len(self.std)} entries, mean {len(self.mean)}")


class _Codec(Section):
    name: Annotated[str, OneOf(CODEC_NAMES)]  # the codec registry, read when checking
    bits: Annotated[int, Meta(ge=1, le=8)]
    params: dict[str, Any] = field(default_factory=dict)
    tables: Optional[dict[str, Any]] = None  # codec tables, base64 + sha256 (wire.entropy_tables)

    def check(self) -> None:
        try:
            normalize_params(self.name, self.params)
        except CodecError as exc:
            raise self.invalid("params", f"are invalid: {exc}") from None
        kind = codec_class(self.name).table_kind
        if self.tables is None:
            if kind is not None:
                raise self.missing("tables", f"codec {self.name!r} needs {kind} tables")
            return
        try:
            tables = tables_from_json(self.tables)
        except CodecError as exc:
            raise self.invalid("tables", str(exc)) from None
        for held_kind, t in tables.items():
            if t.bits != self.bits:
                raise self.invalid(
                    f"tables.{held_kind}.bits", f"is {t.bits}, codec.bits {self.bits}"
                )
        if kind is not None:
            held = tables.get(kind)
            if held is None or held.sha256 != self.params.get("tables"):
                raise self.invalid(
                    "params.tables", f"names no {kind} tables carried in the codec's tables"
                )

    def as_dict(self) -> dict:
        out = {"name": self.name, "bits": self.bits, "params": dict(self.params)}
        if self.tables is not None:
            out["tables"] = self.tables
        return out


class _Document(Section):
    format: str
    model_id: _Name
    extra: dict[str, Any] = field(default_factory=dict)

    expected_format = ""  # a class attribute, not a field: each manifest kind sets its own

    def check(self) -> None:
        if self.format != self.expected_format:
            raise self.invalid("format", f"must be {self.expected_format!r}, got {self.format!r}")


class _HeadDoc(_Document, kw_only=True):
    expected_format = HEAD_FORMAT
    input: _Tensor
    output: _Tensor
    bottleneck_chw: _Dims3
    normalization: _Normalization
    codec: _Codec
    labels: list[str]
    source_sha256: _Sha256
    tflite_sha256: _Sha256

    def check(self) -> None:
        super().check()
        out = self.output
        if out.scale is None or out.zero_point is None:
            raise self.invalid("output", "needs scale and zero_point (the head output is int8)")
        if not -128 <= out.zero_point <= 127:
            raise self.invalid("output.zero_point", f"must be in [-128, 127], got {out.zero_point}")
        if out.layout == "NHWC" and len(out.shape) == 4:
            c, h, w = self.bottleneck_chw
            if list(out.shape[1:]) != [h, w, c]:
                raise self.invalid(
                    "bottleneck_chw", f"is {self.bottleneck_chw}, which disagrees with output.shape"
                )

    def value(self) -> HeadManifest:
        return HeadManifest(
            model_id=self.model_id,
            input=self.input.spec(),
            output=self.output.spec(),
            bottleneck_chw=list(self.bottleneck_chw),
            normalization={"mean": self.normalization.mean, "std": self.normalization.std},
            codec=self.codec.as_dict(),
            labels=list(self.labels),
            source_sha256=self.source_sha256,
            tflite_sha256=self.tflite_sha256,
            extra=self.extra,
        )


class _TailDoc(_Document, kw_only=True):
    expected_format = TAIL_FORMAT
    input_chw: _Dims3
    num_classes: Annotated[int, Meta(ge=1)]
    labels: list[str]
    codec: _Codec
    split: dict[str, Any]

    def check(self) -> None:
        super().check()
        if self.labels and len(self.labels) != self.num_classes:
            raise self.invalid(
                "labels", f"{len(self.labels)} labels for num_classes={self.num_classes}"
            )

    def value(self) -> TailManifest:
        return TailManifest(
            model_id=self.model_id,
            input_chw=list(self.input_chw),
            num_classes=self.num_classes,
            labels=list(self.labels),
            codec=self.codec.as_dict(),
            split=self.split,
            extra=self.extra,
        )


class _HeadSourceDoc(_Document, kw_only=True):
    expected_format = HEAD_SOURCE_FORMAT
    input_hw: _Dims2
    normalization: _Normalization
    labels: list[str]
    bottleneck_chw: _Dims3
    codec: _Codec

    def value(self) -> HeadSourceManifest:
        return HeadSourceManifest(
            model_id=self.model_id,
            input_hw=list(self.input_hw),
            normalization={"mean": self.normalization.mean, "std": self.normalization.std},
            labels=list(self.labels),
            bottleneck_chw=list(self.bottleneck_chw),
            codec=self.codec.as_dict(),
            extra=self.extra,
        )


def codec_tables(codec: dict) -> dict[str, EntropyTables]:
    """``codec.tables`` of a validated manifest, parsed (hashes were checked at load)."""
    raw = codec.get("tables")
    return {} if raw is None else tables_from_json(raw)


def _parse(data: Any, doc: type[_Document], where: str) -> Any:
    """A manifest document checked against its declared shape; errors name file and key."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")

    def refuse(problem: Violation) -> Exception:
        return ManifestError(f"{where}: {problem.message}")

    return convert(data, doc, on_error=refuse).value()  # type: ignore[attr-defined]


_PARSERS: dict[type, tuple[str, type[_Document]]] = {
    HeadManifest: (HEAD_FORMAT, _HeadDoc),
    TailManifest: (TAIL_FORMAT, _TailDoc),
    HeadSourceManifest: (HEAD_SOURCE_FORMAT, _HeadSourceDoc),
}


# ----------------------------------------------------------------------------- I/O


def _read_json(path: PathLike) -> Any:
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


def load_head_manifest(path: PathLike) -> HeadManifest:
    return _parse(_read_json(path), _HeadDoc, str(path))


def load_tail_manifest(path: PathLike) -> TailManifest:
    return _parse(_read_json(path), _TailDoc, str(path))


def load_head_source_manifest(path: PathLike) -> HeadSourceManifest:
    return _parse(_read_json(path), _HeadSourceDoc, str(path))


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    """JSON-ready dict with the ``format`` key first; validated like a loaded file."""
    try:
        fmt, doc = _PARSERS[type(manifest)]
    except KeyError:
        raise ManifestError(f"not a manifest: {type(manifest).__name__}") from None
    d = {"format": fmt, **asdict(manifest)}
    _parse(json.loads(json.dumps(d)), doc, f"<{type(manifest).__name__}>")
    return d


def save_manifest(manifest: Manifest, path: PathLike) -> None:
    """Validate and write atomically: readers see the old file or the new one, never half."""
    d = manifest_to_dict(manifest)
    text = json.dumps(d, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file, streamed (model files can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
