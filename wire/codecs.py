"""Feature codecs: the int8 bottleneck -> n-bit codes -> bytes on the wire, and back.

Why four codecs: BottleNet compresses the tiled feature image with JPEG (lossy, quality ~20);
PNG is the lossless image-codec baseline on the same tiled image; zstd and raw work on the
bit-packed codes directly, which is cheapest in CPU and exact. All four are deterministic:
the same codes give the same bytes (pinned by golden hashes in the tests).

Why a registry: each codec is one :class:`Codec` subclass that owns its parameters (name,
default, range), its encoder and its decoder — the way each CompressAI entropy model owns
its own compress/decompress — registered by name with :func:`register_codec`. Everything
else is derived from the registry: the names the server accepts in a HELLO
(``CODEC_NAMES`` is a live view), the device config's choices, the manifests' checks and
the training CLIs' ``--codec`` choices and parameter flags. Adding a codec is one class in
this file (plus its tests and, once its bytes are fixed, a golden hash).

Payload formats (no per-frame header; the HELLO carries shape, quantization and codec):

- ``raw``:  codes in C,H,W order, ``bits`` bits each, MSB first, packed back to back; the last
  byte is zero-padded. Exactly ``ceil(C*H*W*bits/8)`` bytes.
- ``zstd``: one zstd frame (content size recorded) of the ``raw`` payload.
- ``png``:  8-bit grayscale PNG of the tiled image (see ``wire.tiling``) of codes scaled to
  0..255 (``gray = round(code*255/(2**bits-1))``, exactly invertible).
- ``jpeg``: baseline 8-bit grayscale JPEG (Pillow/libjpeg-turbo) of the same scaled tiled
  image; decoded gray levels are mapped back with ``code = round(gray*(2**bits-1)/255)``.
- ``rans``: interleaved rANS of the codes with per-channel frequency tables (``wire.rans``).
- ``zstd_dict``: one zstd frame (content size recorded, no dictionary id) of the ``raw``
  payload, compressed with a dictionary trained on the training set's codes.

- ``jpeg_image``: not a bottleneck codec: the ``cloud`` partition's whole input picture
  (3×H×W uint8) as a baseline colour JPEG (1×H×W: grayscale), decoded back to C×H×W.

``rans`` and ``zstd_dict`` are driven by entropy tables that travel in the head and tail manifests
(``wire.entropy_tables``); HELLO names them by hash in ``codec_params["tables"]``.

Error bounds are in docs/wire.md: lossless codecs are exact; JPEG's error is measured there.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import zstandard
from PIL import Image

from wire.bitpack import pack_bits, packed_size, unpack_bits
from wire.entropy_tables import EntropyTables, TablesMismatch
from wire.errors import CodecError
from wire.quant import QuantParams, dequantize_codes, quantize_float_to_int8, requantize_int8
from wire.rans import RansCoder
from wire.registry import Registry
from wire.tiling import tile, tiled_shape, untile

__all__ = [
    "CODECS",
    "CODEC_NAMES",
    "Codec",
    "FeatureCodec",
    "Param",
    "TablesMismatch",
    "codec_class",
    "feature_codec_names",
    "jpeg_quant_table",
    "jpeg_rmse_bound",
    "normalize_params",
    "pack_bits",
    "packed_size",
    "register_codec",
    "unpack_bits",
    "unregister_codec",
]

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")

#: zstd decoder window cap: payloads are at most a few hundred kB, so a frame asking for a
#: larger window is hostile or broken and is refused instead of allocating it.
_ZSTD_MAX_WINDOW = 8 << 20


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Param:
    """One integer codec parameter: its default, inclusive range and a line of help."""

    default: int
    lo: int
    hi: int
    help: str = ""

    def __post_init__(self) -> None:
        if not self.lo <= self.default <= self.hi:
            raise ValueError(f"default {self.default} outside {self.lo}..{self.hi}")

    def describe(self) -> str:
        return f"{self.lo}..{self.hi}, default {self.default}"


class Codec:
    """One payload format for one stream: n-bit codes (uint8, C×H×W) <-> bytes.

    A subclass sets ``name``, ``lossless``, ``params`` and ``help``, implements
    :meth:`encode` and :meth:`decode`, and is registered with :func:`register_codec`.
    :class:`FeatureCodec` does everything the formats share (layouts, quantization,
    validating the codes it is handed), so a codec only turns valid codes into bytes and
    back. ``decode`` must raise only :class:`CodecError` on bad bytes: it runs on whatever
    arrives from the network.
    """

    name: ClassVar[str]
    lossless: ClassVar[bool]
    params: ClassVar[Mapping[str, Param]] = {}
    help: ClassVar[str] = ""
    #: What the codes are: ``"features"`` (a bottleneck's n-bit codes, any C×H×W and bit
    #: depth) or ``"image"`` (the camera picture itself, 8-bit RGB or gray: the ``cloud``
    #: partition). Places that offer codecs for a bottleneck list only feature codecs.
    carries: ClassVar[str] = "features"
    #: The kind of entropy tables (``wire.entropy_tables``) the codec is driven by, or None.
    #: A table codec is built with its tables and takes ``codec_params["tables"]`` = their
    #: sha256, so both ends provably hold the same tables.
    table_kind: ClassVar[str | None] = None

    def __init__(self, shape_chw: tuple[int, int, int], bits: int, params: dict[str, int]):
        self.shape_chw = shape_chw
        self.bits = bits
        self.values = params  # normalized by normalize_params: every key, in range
        self.n_values = shape_chw[0] * shape_chw[1] * shape_chw[2]

    def encode(self, codes_chw: np.ndarray) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def normalize(cls, params: dict | None) -> dict[str, int]:
        """Validate ``params`` and fill defaults; CodecError names the bad key."""
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise CodecError(f"{cls.name} params must be a dict, got {type(params).__name__}")
        for key in params:
            if key not in cls.params and not (cls.table_kind and key == "tables"):
                allowed = ", ".join([*cls.params, *(["tables"] if cls.table_kind else [])])
                raise CodecError(
                    f"unknown {cls.name} parameter {key!r} (allowed: {allowed or 'none'})"
                )
        out: dict[str, Any] = {}
        if cls.table_kind and "tables" in params:
            # Optional here (a training command names the codec before its tables exist);
            # FeatureCodec fills it from the tables it holds, and the server requires it.
            ref = params["tables"]
            if not isinstance(ref, str) or not _SHA256_HEX.match(ref):
                raise CodecError(
                    f"{cls.name} codec_params['tables'] must be the sha256 (64 lowercase hex "
                    f"digits) of its {cls.table_kind} tables, got {_short(ref)}"
                )
            out["tables"] = ref
        for key, spec in cls.params.items():
            value = params.get(key, spec.default)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise CodecError(f"{cls.name} parameter {key!r} must be an int, got {value!r}")
            if not spec.lo <= int(value) <= spec.hi:
                raise CodecError(
                    f"{cls.name} parameter {key!r} must be in {spec.lo}..{spec.hi}, got {value}"
                )
            out[key] = int(value)
        return out


#: name -> codec class, in registration order (the wire's order: jpeg, png, zstd, raw).
CODECS: Registry[type[Codec]] = Registry("codec")

#: The registered names, tuple-like and live: a codec registered after import (a plug-in, a
#: test's toy codec) is accepted everywhere that checks ``name in CODEC_NAMES``.
CODEC_NAMES: Sequence[str] = CODECS.names


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make ``cls`` selectable by its ``name`` everywhere codecs are named."""
    if not isinstance(getattr(cls, "lossless", None), bool):
        raise ValueError(f"codec {cls.__name__} must say whether it is lossless (a bool)")
    CODECS.register(getattr(cls, "name", None), cls)  # type: ignore[arg-type]
    return cls


def feature_codec_names() -> tuple[str, ...]:
    """The registered codecs that code a bottleneck (what training and the splits choose from)."""
    return tuple(n for n, c in CODECS.items() if c.carries == "features")


def unregister_codec(name: str) -> None:
    """Remove a registered codec (for plugins that unload and tests that register a toy)."""
    CODECS.unregister(name)


def codec_class(name: str) -> type[Codec]:
    """The class registered as ``name``; CodecError lists the known names otherwise."""
    cls = CODECS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CodecError(f"unknown codec {name!r}; expected one of {', '.join(CODEC_NAMES)}")
    return cls


def _short(value: Any, limit: int = 40) -> str:
    """repr() cut short: a peer's value must not fill an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalize_params(codec: str, params: dict | None) -> dict[str, int]:
    """Validate ``params`` for ``codec`` and fill defaults; CodecError names the bad key."""
    return codec_class(codec).normalize(params)


# ----------------------------------------------------------------------------- JPEG bounds


#: The JPEG standard's luminance quantization table (ITU T.81 Annex K.1), natural order;
#: libjpeg scales it by quality (``jpeg_quality_scaling``) and Pillow uses that unchanged.
_JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
)


def jpeg_quant_table(quality: int) -> np.ndarray:
    """The 8×8 luminance table libjpeg derives from ``quality`` (baseline, entries 1..255)."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip((_JPEG_LUMA * scale + 50) // 100, 1, 255)


def jpeg_rmse_bound(quality: int, image_hw: tuple[int, int], bits: int = 8) -> float:
    """Guaranteed upper bound on the RMSE (in n-bit code units) of a JPEG round trip.

    Why it holds: JPEG's 8×8 DCT is orthonormal, and dequantization leaves each coefficient
    within Q/2 of its true value, so by Parseval a block's squared spatial error is at most
    sum(Q²)/4. Edge blocks are padded by replication, so the real pixels carry at most the
    padded blocks' total error. Clamping to 0..255 only shrinks error. One gray level of
    slack covers integer IDCT and output rounding; converting gray levels to n-bit codes
    scales by (2**bits-1)/255 and adds at most half a code of rounding.
    """
    h, w = image_hw
    q = jpeg_quant_table(quality).astype(np.float64)
    blocks = -(-h // 8) * -(-w // 8)
    gray = np.sqrt(blocks * 64 / (h * w) * float(np.mean(q**2)) / 4.0) + 1.0
    levels = (1 << bits) - 1
    return gray if bits == 8 else gray * levels / 255.0 + 0.5


# ----------------------------------------------------------------------------- gray scaling


def _code_to_gray_lut(bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    c = np.arange(levels + 1, dtype=np.int32)
    return ((2 * c * 255 + levels) // (2 * levels)).astype(np.uint8)  # round half up


def _gray_to_code_lut(bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    g = np.arange(256, dtype=np.int32)
    return ((2 * g * levels + 255) // 510).astype(np.uint8)  # round half up


_TO_GRAY = {b: _code_to_gray_lut(b) for b in range(1, 9)}
_FROM_GRAY = {b: _gray_to_code_lut(b) for b in range(1, 9)}


# ----------------------------------------------------------------------------- the codecs


class _TiledImageCodec(Codec):
    """Codes scaled to 0..255, tiled into one grayscale image, saved by Pillow."""

    format: ClassVar[str]
    end_marker: ClassVar[bytes]

    def __init__(self, shape_chw: tuple[int, int, int], bits: int, params: dict[str, int]):
        super().__init__(shape_chw, bits, params)
        self.image_shape = tiled_shape(shape_chw)

    def _save_options(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, codes_chw: np.ndarray) -> bytes:
        image = tile(np.take(_TO_GRAY[self.bits], codes_chw))
        out = io.BytesIO()
        Image.fromarray(image).save(out, format=self.format, **self._save_options())
        return out.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        fmt = self.format
        h, w = self.image_shape
        # Pillow ignores bytes after the end marker; we do not, so one tensor has one payload.
        if not data.endswith(self.end_marker):
            raise CodecError(f"{fmt} payload does not end with its end marker (truncated?)")
        try:
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                # Check the header before decoding pixels: never allocate for a wrong size.
                if im.size != (w, h):
                    raise CodecError(f"{fmt} image is {im.size[0]}×{im.size[1]}, expected {w}×{h}")
                if im.mode != "L":
                    raise CodecError(f"{fmt} image mode is {im.mode!r}, expected 'L'")
                im.load()
                image = np.asarray(im, dtype=np.uint8)
        except CodecError:
            raise
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
            raise CodecError(f"undecodable {fmt} payload: {type(exc).__name__}: {exc}") from None
        return np.take(_FROM_GRAY[self.bits], untile(image, self.shape_chw))


@register_codec
class JpegCodec(_TiledImageCodec):
    """BottleNet's choice: baseline grayscale JPEG of the tiled feature image (lossy)."""

    name = "jpeg"
    lossless = False
    params = MappingProxyType({"quality": Param(20, 1, 100, "JPEG quality")})
    help = "baseline grayscale JPEG of the tiled codes (lossy; BottleNet)"
    format = "JPEG"
    end_marker = b"\xff\xd9"  # EOI

    def _save_options(self) -> dict[str, Any]:
        return {"quality": self.values["quality"], "optimize": False}


@register_codec
class PngCodec(_TiledImageCodec):
    """The lossless image-codec baseline on the same tiled image."""

    name = "png"
    lossless = True
    params = MappingProxyType({"level": Param(6, 0, 9, "zlib compression level")})
    help = "grayscale PNG of the tiled codes (lossless)"
    format = "PNG"
    end_marker = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # empty IEND chunk with its CRC

    def _save_options(self) -> dict[str, Any]:
        return {"compress_level": self.values["level"], "optimize": False}


def _zstd_frame_exactly(
    dctx: zstandard.ZstdDecompressor, data: bytes, want: int, what: str
) -> bytes:
    """One zstd frame holding exactly ``want`` bytes, or CodecError.

    The frame's declared content size is checked before anything is decompressed, so a
    zstd bomb (a few bytes declaring gigabytes) is refused without allocating; truncated
    frames and trailing bytes are refused too: one tensor, one frame.
    """
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"not a zstd frame: {exc}") from None
    if size != want:
        raise CodecError(f"zstd frame holds {size} bytes, expected {want}")
    dobj = dctx.decompressobj()
    try:
        packed = dobj.decompress(data)
    except zstandard.ZstdError as exc:
        raise CodecError(f"corrupt {what} payload: {exc}") from None
    if not dobj.eof:
        raise CodecError(f"truncated {what} payload")
    if dobj.unused_data:
        raise CodecError(f"{len(dobj.unused_data)} trailing bytes after the zstd frame")
    if len(packed) != want:
        raise CodecError(f"zstd frame decoded to {len(packed)} bytes, expected {want}")
    return packed


@register_codec
class ZstdCodec(Codec):
    """One zstd frame of the bit-packed codes: exact, and cheap in CPU."""

    name = "zstd"
    lossless = True
    params = MappingProxyType({"level": Param(1, -7, 22, "zstd compression level")})
    help = "zstd frame of the bit-packed codes (lossless)"

    def __init__(self, shape_chw: tuple[int, int, int], bits: int, params: dict[str, int]):
        super().__init__(shape_chw, bits, params)
        # zstd contexts are not thread-safe; one pair per thread keeps a FeatureCodec shareable
        # (the server may decode one session's frames on several worker threads).
        self._local = threading.local()

    def _pair(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        pair = getattr(self._local, "pair", None)
        if pair is None:
            pair = (
                zstandard.ZstdCompressor(level=self.values["level"], write_content_size=True),
                zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW),
            )
            self._local.pair = pair
        return pair

    def encode(self, codes_chw: np.ndarray) -> bytes:
        return self._pair()[0].compress(pack_bits(codes_chw, self.bits))

    def decode(self, data: bytes) -> np.ndarray:
        want = packed_size(self.n_values, self.bits)
        packed = _zstd_frame_exactly(self._pair()[1], data, want, self.name)
        return unpack_bits(packed, self.n_values, self.bits).reshape(self.shape_chw)


@register_codec
class RawCodec(Codec):
    """The bit-packed codes as they are: no CPU beyond packing, exactly predictable size."""

    name = "raw"
    lossless = True
    help = "bit-packed codes, nothing else (lossless)"

    def encode(self, codes_chw: np.ndarray) -> bytes:
        return pack_bits(codes_chw, self.bits)

    def decode(self, data: bytes) -> np.ndarray:
        return unpack_bits(data, self.n_values, self.bits).reshape(self.shape_chw)


class _TableCodec(Codec):
    """A codec driven by entropy tables that both ends hold (``wire.entropy_tables``)."""

    def __init__(
        self,
        shape_chw: tuple[int, int, int],
        bits: int,
        params: dict[str, Any],
        tables: EntropyTables,
    ) -> None:
        super().__init__(shape_chw, bits, params)
        if tables.kind != self.table_kind:
            raise CodecError(f"{self.name} needs {self.table_kind} tables, got {tables.kind}")
        if tables.sha256 != params.get("tables"):
            raise TablesMismatch(
                f"{self.name}: codec_params names tables {str(params.get('tables'))[:12]}..., "
                f"this side holds {tables.sha256[:12]}... (head and tail from different "
                "exports? re-export or reconvert so both carry the same tables)"
            )
        if tables.bits != bits:
            raise CodecError(f"{self.name} tables are for {tables.bits}-bit codes, not {bits}")
        if tables.channels != shape_chw[0]:
            raise CodecError(
                f"{self.name} tables are for {tables.channels} channels, the tensor has "
                f"{shape_chw[0]}"
            )
        self.tables = tables


@register_codec
class RansCodec(_TableCodec):
    """rANS over interleaved lanes with per-channel frequencies from a learned entropy model."""

    name = "rans"
    lossless = True
    table_kind = "rans"
    params = MappingProxyType(
        {"lanes": Param(32, 1, 4096, "interleaved rANS states (speed vs 4 B/lane)")}
    )
    help = "rANS with per-channel frequency tables from the manifest (lossless; numpy)"

    def __init__(self, shape_chw, bits, params, tables) -> None:  # type: ignore[no-untyped-def]
        super().__init__(shape_chw, bits, params, tables)
        self._coder = RansCoder(tables.frequencies(), shape_chw, params["lanes"])

    def encode(self, codes_chw: np.ndarray) -> bytes:
        return self._coder.encode(codes_chw)

    def decode(self, data: bytes) -> np.ndarray:
        return self._coder.decode(data)


@register_codec
class ZstdDictCodec(_TableCodec):
    """zstd of the bit-packed codes with a dictionary trained on the training set's codes.

    The dictionary carries the entropy tables (and common byte strings), so a small frame
    does not pay for its own; the frame omits the dictionary id (HELLO's tables hash names
    it) and keeps its content size, which the decoder checks before allocating.
    """

    name = "zstd_dict"
    lossless = True
    table_kind = "zstd_dict"
    params = MappingProxyType({"level": Param(3, 1, 22, "zstd compression level")})
    help = "zstd of the bit-packed codes with a trained dictionary from the manifest (lossless)"

    def __init__(self, shape_chw, bits, params, tables) -> None:  # type: ignore[no-untyped-def]
        super().__init__(shape_chw, bits, params, tables)
        self._local = threading.local()
        self._want = packed_size(self.n_values, bits)

    def _pair(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        pair = getattr(self._local, "pair", None)
        if pair is None:
            try:
                dictionary = zstandard.ZstdCompressionDict(self.tables.data)
                dictionary.precompute_compress(level=self.values["level"])
            except zstandard.ZstdError as exc:
                raise CodecError(f"zstd_dict tables are not a zstd dictionary: {exc}") from None
            pair = (
                zstandard.ZstdCompressor(
                    level=self.values["level"],
                    dict_data=dictionary,
                    write_content_size=True,
                    write_dict_id=False,
                ),
                zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=_ZSTD_MAX_WINDOW),
            )
            self._local.pair = pair
        return pair

    def encode(self, codes_chw: np.ndarray) -> bytes:
        return self._pair()[0].compress(pack_bits(codes_chw, self.bits))

    def decode(self, data: bytes) -> np.ndarray:
        packed = _zstd_frame_exactly(self._pair()[1], data, self._want, self.name)
        return unpack_bits(packed, self.n_values, self.bits).reshape(self.shape_chw)


@register_codec
class JpegImageCodec(Codec):
    """The ``cloud`` partition's payload: the head's input picture as a colour JPEG.

    Why a codec and not a separate path: the cloud model is one more entry of the server's
    registry, paired by model_id and opened by the same HELLO as a tail. The "tensor" is the
    preprocessed uint8 image (C×H×W, C = 3, or 1 for gray, 8 bits; with HELLO's scale 1/255
    and zero point -128 the server dequantizes it to pixel/255, which the cloud model
    normalizes itself), and the codes are its pixel values, so nothing else changes.
    """

    name = "jpeg_image"
    lossless = False
    carries = "image"
    params = MappingProxyType({"quality": Param(85, 1, 100, "JPEG quality")})
    help = "the input picture as a colour JPEG (the cloud partition; not for bottlenecks)"
    _MODES: ClassVar[dict[int, str]] = {3: "RGB", 1: "L"}

    def __init__(self, shape_chw: tuple[int, int, int], bits: int, params: dict[str, int]):
        super().__init__(shape_chw, bits, params)
        if shape_chw[0] not in self._MODES or bits != 8:
            raise CodecError(
                f"jpeg_image codes an 8-bit picture of 3 (RGB) or 1 (gray) channels, got "
                f"C×H×W {shape_chw} at {bits} bits (a bottleneck needs a feature codec: "
                f"{', '.join(feature_codec_names())})"
            )
        self.mode = self._MODES[shape_chw[0]]

    def encode(self, codes_chw: np.ndarray) -> bytes:
        c = codes_chw.shape[0]
        image = codes_chw[0] if c == 1 else np.ascontiguousarray(codes_chw.transpose(1, 2, 0))
        out = io.BytesIO()
        Image.fromarray(image, self.mode).save(
            out, format="JPEG", quality=self.values["quality"], optimize=False
        )
        return out.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        c, h, w = self.shape_chw
        if not data.endswith(b"\xff\xd9"):
            raise CodecError("JPEG payload does not end with its end marker (truncated?)")
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
                # The header first: never allocate pixels for a picture of the wrong size.
                if im.size != (w, h):
                    raise CodecError(f"JPEG image is {im.size[0]}×{im.size[1]}, expected {w}×{h}")
                if im.mode != self.mode:
                    raise CodecError(f"JPEG image mode is {im.mode!r}, expected {self.mode!r}")
                im.load()
                image = np.asarray(im, dtype=np.uint8)
        except CodecError:
            raise
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
            raise CodecError(f"undecodable JPEG payload: {type(exc).__name__}: {exc}") from None
        return image[None] if c == 1 else np.ascontiguousarray(image.transpose(2, 0, 1))


# ----------------------------------------------------------------------------- per stream


class FeatureCodec:
    """One stream's codec: fixed shape, quantization and codec parameters (from HELLO)."""

    def __init__(
        self,
        shape_chw: tuple[int, int, int],
        quant: QuantParams,
        codec: str,
        params: dict | None = None,
        tables: Mapping[str, EntropyTables] | None = None,
    ) -> None:
        try:
            shape = tuple(int(d) for d in shape_chw)
        except (TypeError, ValueError):
            raise CodecError(f"shape_chw must be (C, H, W) ints, got {shape_chw!r}") from None
        if len(shape) != 3 or min(shape) < 1:
            raise CodecError(f"shape_chw must be (C, H, W) of positive ints, got {shape_chw!r}")
        if not isinstance(quant, QuantParams):
            raise CodecError(f"quant must be QuantParams, got {type(quant).__name__}")
        self.shape_chw: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.quant = quant
        cls = codec_class(codec)
        self.codec = codec
        kind = cls.table_kind
        held = None if kind is None or tables is None else tables.get(kind)
        if kind is not None and held is None:
            raise CodecError(
                f"codec {codec!r} needs {kind} entropy tables, and none came with the manifest "
                "(export with a rate-trained entropy model, or pick another codec)"
            )
        if held is not None and (params is None or "tables" not in params):
            # the side that holds the tables names them (the device, building its HELLO)
            params = {**(params or {}), "tables": held.sha256}
        self.params = cls.normalize(params)
        self.n_values = shape[0] * shape[1] * shape[2]
        self.image_shape = tiled_shape(self.shape_chw)
        if held is None:
            self._impl = cls(self.shape_chw, quant.bits, self.params)
        else:
            self._impl = cls(self.shape_chw, quant.bits, self.params, held)  # type: ignore[call-arg]

    def __repr__(self) -> str:
        return (
            f"FeatureCodec({self.shape_chw}, bits={self.quant.bits}, "
            f"codec={self.codec!r}, params={self.params})"
        )

    @property
    def lossless(self) -> bool:
        return self._impl.lossless

    # -- encoding

    def to_chw(self, x: np.ndarray, layout: str = "NHWC") -> np.ndarray:
        """Head output in ``layout`` (NHWC/HWC or NCHW/CHW, batch of 1) -> C×H×W view."""
        x = np.asarray(x)
        if layout in ("NHWC", "HWC"):
            if x.ndim == 4 and x.shape[0] == 1:
                x = x[0]
            if x.ndim != 3:
                raise CodecError(f"expected (1,H,W,C) or (H,W,C), got shape {x.shape}")
            x = x.transpose(2, 0, 1)
        elif layout in ("NCHW", "CHW"):
            if x.ndim == 4 and x.shape[0] == 1:
                x = x[0]
            if x.ndim != 3:
                raise CodecError(f"expected (1,C,H,W) or (C,H,W), got shape {x.shape}")
        else:
            raise CodecError(f"unknown layout {layout!r}; expected NHWC, HWC, NCHW or CHW")
        if x.shape != self.shape_chw:
            raise CodecError(f"tensor is C×H×W {x.shape}, codec expects {self.shape_chw}")
        return x

    def encode_int8(self, x: np.ndarray, layout: str = "NHWC") -> bytes:
        """The head's int8 output -> payload bytes."""
        chw = self.to_chw(x, layout)
        if chw.dtype != np.int8:
            raise CodecError(f"encode_int8 expects int8, got {chw.dtype}")
        return self.encode_codes(requantize_int8(chw, self.quant))

    def encode_codes(self, codes_chw: np.ndarray) -> bytes:
        """n-bit codes (uint8, C×H×W) -> payload bytes."""
        codes = np.asarray(codes_chw)
        if codes.dtype != np.uint8 or codes.shape != self.shape_chw:
            raise CodecError(
                f"codes must be uint8 {self.shape_chw}, got {codes.dtype} {codes.shape}"
            )
        if codes.size and int(codes.max()) > self.quant.levels:
            raise CodecError(
                f"code {int(codes.max())} exceeds {self.quant.levels} for {self.quant.bits} bits"
            )
        return self._impl.encode(codes)

    # -- decoding

    def decode(self, data: bytes) -> np.ndarray:
        """Payload bytes -> uint8 n-bit codes, C×H×W. Raises only CodecError on bad input."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"payload must be bytes, got {type(data).__name__}")
        return self._impl.decode(bytes(data))

    def decode_float(self, data: bytes) -> np.ndarray:
        """Payload -> float32 C×H×W, dequantized: what the tail eats."""
        return dequantize_codes(self.decode(data), self.quant)

    # -- training / simulation

    def roundtrip_float(self, x: np.ndarray) -> np.ndarray:
        """float32 (N,C,H,W) or (C,H,W) -> int8 -> n-bit -> codec -> float32, same shape.

        What the tail sees at run time, for compression-aware training (BottleNet Sec. 2.2).
        Lossless codecs are the identity on codes (property-tested), so their byte stage is
        skipped to keep training fast; JPEG runs for real, sample by sample.
        """
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == 3
        batch = x[None] if single else x
        if batch.ndim != 4 or batch.shape[1:] != self.shape_chw:
            raise CodecError(f"expected (N,){self.shape_chw}, got {x.shape}")
        codes = requantize_int8(quantize_float_to_int8(batch, self.quant), self.quant)
        if not self.lossless:
            codes = np.stack([self.decode(self.encode_codes(c)) for c in codes])
        out = dequantize_codes(codes, self.quant)
        return out[0] if single else out
