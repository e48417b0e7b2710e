"""Feature codecs: the int8 bottleneck -> n-bit codes -> bytes on the wire, and back.

Why four codecs: BottleNet compresses the tiled feature image with JPEG (lossy, quality ~20);
PNG is the lossless image-codec baseline on the same tiled image; zstd and raw work on the
bit-packed codes directly, which is cheapest in CPU and exact. All four are deterministic:
the same codes give the same bytes (pinned by golden hashes in the tests).

Payload formats (no per-frame header; the HELLO carries shape, quantization and codec):

- ``raw``:  codes in C,H,W order, ``bits`` bits each, MSB first, packed back to back; the last
  byte is zero-padded. Exactly ``ceil(C*H*W*bits/8)`` bytes.
- ``zstd``: one zstd frame (content size recorded) of the ``raw`` payload.
- ``png``:  8-bit grayscale PNG of the tiled image (see ``wire.tiling``) of codes scaled to
  0..255 (``gray = round(code*255/(2**bits-1))``, exactly invertible).
- ``jpeg``: baseline 8-bit grayscale JPEG (Pillow/libjpeg-turbo) of the same scaled tiled
  image; decoded gray levels are mapped back with ``code = round(gray*(2**bits-1)/255)``.

Error bounds are in docs/wire.md: lossless codecs are exact; JPEG's error is measured there.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import zstandard
from PIL import Image

from wire.errors import CodecError
from wire.quant import QuantParams, dequantize_codes, quantize_float_to_int8, requantize_int8
from wire.tiling import tile, tiled_shape, untile

CODEC_NAMES = ("jpeg", "png", "zstd", "raw")
LOSSLESS_CODECS = frozenset({"png", "zstd", "raw"})

#: Parameter name -> (default, min, max) per codec. Unknown keys are errors.
CODEC_PARAMS: dict[str, dict[str, tuple[int, int, int]]] = {
    "jpeg": {"quality": (20, 1, 100)},
    "png": {"level": (6, 0, 9)},
    "zstd": {"level": (1, -7, 22)},
    "raw": {},
}

#: zstd decoder window cap: payloads are at most a few hundred kB, so a frame asking for a
#: larger window is hostile or broken and is refused instead of allocating it.
_ZSTD_MAX_WINDOW = 8 << 20
_JPEG_END = b"\xff\xd9"  # EOI marker
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # empty IEND chunk with its CRC


def normalize_params(codec: str, params: dict | None) -> dict[str, int]:
    """Validate ``params`` for ``codec`` and fill defaults; CodecError names the bad key."""
    if codec not in CODEC_NAMES:
        raise CodecError(f"unknown codec {codec!r}; expected one of {', '.join(CODEC_NAMES)}")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise CodecError(f"{codec} params must be a dict, got {type(params).__name__}")
    spec = CODEC_PARAMS[codec]
    for key in params:
        if key not in spec:
            allowed = ", ".join(spec) or "none"
            raise CodecError(f"unknown {codec} parameter {key!r} (allowed: {allowed})")
    out = {}
    for key, (default, lo, hi) in spec.items():
        value = params.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise CodecError(f"{codec} parameter {key!r} must be an int, got {value!r}")
        if not lo <= int(value) <= hi:
            raise CodecError(f"{codec} parameter {key!r} must be in {lo}..{hi}, got {value}")
        out[key] = int(value)
    return out


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


# ----------------------------------------------------------------------------- bit packing


def packed_size(n_values: int, bits: int) -> int:
    return (n_values * bits + 7) // 8


def _lane_mask(lane: int, lo: int, hi: int) -> np.uint64:
    """uint64 with bits [lo, hi) set in every ``lane``-bit lane."""
    m = 0
    for start in range(0, 64, lane):
        m |= ((1 << (hi - lo)) - 1) << (start + lo)
    return np.uint64(m)


def _merge_steps(bits: int) -> list[tuple[np.uint64, np.uint64, np.uint64, np.uint64]]:
    """Shift/mask steps that squeeze 8 one-byte codes of a uint64 into its low 8*bits bits.

    Step k halves the number of groups: in each 2^k-byte lane the upper group (at bit
    ``half``) slides down next to the lower one (at bit ``width``). Bits that spill into the
    neighbouring lane land at or above ``2*width`` and are masked off, because
    ``half >= width`` at every step.
    """
    steps = []
    for lane, half, width in ((16, 8, bits), (32, 16, 2 * bits), (64, 32, 4 * bits)):
        steps.append(
            (
                np.uint64(half - width),
                _lane_mask(lane, 0, width),  # lower group, stays put
                _lane_mask(lane, width, 2 * width),  # upper group after packing
                _lane_mask(lane, half, half + width),  # upper group before packing
            )
        )
    return steps


_MERGE = {b: _merge_steps(b) for b in range(1, 8)}


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Flat uint8 codes (< 2**bits) -> bytes, ``bits`` per value, MSB first.

    Eight codes are one ``8*bits``-bit group: read as a big-endian uint64, squeezed with
    three shift/mask steps (``_merge_steps``), written back big-endian, top bytes dropped.
    A handful of vector ops on N/8 words instead of per-bit shuffling.
    """
    flat = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return flat.tobytes()
    n = flat.size
    groups = -(-n // 8)
    if n % 8:
        flat = np.concatenate([flat, np.zeros(groups * 8 - n, dtype=np.uint8)])
    x = flat.view(">u8").astype(np.uint64)
    for shift, lo, hi, _ in _MERGE[bits]:
        x = (x & lo) | ((x >> shift) & hi)
    out = x.astype(">u8").view(np.uint8).reshape(groups, 8)[:, 8 - bits :]
    return out.tobytes()[: packed_size(n, bits)]


def unpack_bits(data: bytes, n_values: int, bits: int) -> np.ndarray:
    """Inverse of ``pack_bits``; CodecError if the length or the padding bits are wrong."""
    want = packed_size(n_values, bits)
    if len(data) != want:
        raise CodecError(f"packed payload is {len(data)} bytes, expected {want}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if bits == 8:
        return buf.copy()
    pad = want * 8 - n_values * bits
    if pad and int(buf[-1]) & ((1 << pad) - 1):
        raise CodecError("non-zero padding bits in packed payload")
    groups = -(-n_values // 8)
    wide = np.zeros((groups, 8), dtype=np.uint8)
    if groups * bits == want:
        wide[:, 8 - bits :] = buf.reshape(groups, bits)
    else:
        body = np.zeros(groups * bits, dtype=np.uint8)
        body[:want] = buf
        wide[:, 8 - bits :] = body.reshape(groups, bits)
    x = wide.view(">u8").reshape(groups).astype(np.uint64)
    for shift, lo, _, up in reversed(_MERGE[bits]):
        x = (x & lo) | ((x << shift) & up)
    return x.astype(">u8").view(np.uint8)[:n_values].copy()


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


# ----------------------------------------------------------------------------- the codec


class FeatureCodec:
    """One stream's codec: fixed shape, quantization and codec parameters (from HELLO)."""

    def __init__(
        self,
        shape_chw: tuple[int, int, int],
        quant: QuantParams,
        codec: str,
        params: dict | None = None,
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
        self.codec = codec
        self.params = normalize_params(codec, params)
        self.n_values = shape[0] * shape[1] * shape[2]
        self.image_shape = tiled_shape(self.shape_chw)
        # zstd contexts are not thread-safe; one pair per thread keeps a FeatureCodec shareable
        # (the server may decode one session's frames on several worker threads).
        self._zstd = threading.local()

    def _zstd_pair(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        pair = getattr(self._zstd, "pair", None)
        if pair is None:
            pair = (
                zstandard.ZstdCompressor(level=self.params["level"], write_content_size=True),
                zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW),
            )
            self._zstd.pair = pair
        return pair

    def __repr__(self) -> str:
        return (
            f"FeatureCodec({self.shape_chw}, bits={self.quant.bits}, "
            f"codec={self.codec!r}, params={self.params})"
        )

    @property
    def lossless(self) -> bool:
        return self.codec in LOSSLESS_CODECS

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
        if self.codec in ("raw", "zstd"):
            packed = pack_bits(codes, self.quant.bits)
            return packed if self.codec == "raw" else self._zstd_pair()[0].compress(packed)
        image = tile(np.take(_TO_GRAY[self.quant.bits], codes))
        out = io.BytesIO()
        pil = Image.fromarray(image)
        if self.codec == "jpeg":
            pil.save(out, format="JPEG", quality=self.params["quality"], optimize=False)
        else:
            pil.save(out, format="PNG", compress_level=self.params["level"], optimize=False)
        return out.getvalue()

    # -- decoding

    def decode(self, data: bytes) -> np.ndarray:
        """Payload bytes -> uint8 n-bit codes, C×H×W. Raises only CodecError on bad input."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CodecError(f"payload must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if self.codec == "raw":
            return unpack_bits(data, self.n_values, self.quant.bits).reshape(self.shape_chw)
        if self.codec == "zstd":
            return self._decode_zstd(data)
        return self._decode_image(data)

    def _decode_zstd(self, data: bytes) -> np.ndarray:
        want = packed_size(self.n_values, self.quant.bits)
        try:
            size = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise CodecError(f"not a zstd frame: {exc}") from None
        if size != want:
            raise CodecError(f"zstd frame holds {size} bytes, expected {want}")
        dobj = self._zstd_pair()[1].decompressobj()
        try:
            packed = dobj.decompress(data)
        except zstandard.ZstdError as exc:
            raise CodecError(f"corrupt zstd payload: {exc}") from None
        if not dobj.eof:
            raise CodecError("truncated zstd payload")
        if dobj.unused_data:
            raise CodecError(f"{len(dobj.unused_data)} trailing bytes after the zstd frame")
        return unpack_bits(packed, self.n_values, self.quant.bits).reshape(self.shape_chw)

    def _decode_image(self, data: bytes) -> np.ndarray:
        fmt = "JPEG" if self.codec == "jpeg" else "PNG"
        h, w = self.image_shape
        # Pillow ignores bytes after the end marker; we do not, so one tensor has one payload.
        end = _JPEG_END if self.codec == "jpeg" else _PNG_END
        if not data.endswith(end):
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
        return np.take(_FROM_GRAY[self.quant.bits], untile(image, self.shape_chw))

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
