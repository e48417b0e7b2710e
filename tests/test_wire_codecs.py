"""Quantizer, tiling and feature codecs: exact where promised, typed errors on bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wire.codecs import (
    FeatureCodec,
    codec_class,
    feature_codec_names,
    normalize_params,
    pack_bits,
    unpack_bits,
)
from wire.entropy_tables import rans_tables_from_codes, zstd_dict_tables_from_codes
from wire.errors import CodecError
from wire.quant import QuantParams, dequantize_codes, quantize_float_to_int8, requantize_int8
from wire.synthetic import relu_features
from wire.tiling import grid_shape, tile, untile

# ----------------------------------------------------------------------------- quant


def codec_for(shape, qp: QuantParams, codec: str) -> FeatureCodec:
    """FeatureCodec(shape, qp, codec); table codecs get tables fit to four synthetic frames."""
    if codec_class(codec).table_kind is None:
        return FeatureCodec(shape, qp, codec)
    codes = np.stack(
        [
            requantize_int8(quantize_float_to_int8(relu_features(shape, seed=s), qp), qp)
            for s in range(100, 104)
        ]
    )
    tables = {
        "rans": rans_tables_from_codes(codes, qp.bits),
        "zstd_dict": zstd_dict_tables_from_codes(codes, qp.bits, 1024),
    }
    return FeatureCodec(shape, qp, codec, tables=tables)


def test_bits8_requantize_dequantize_is_exactly_tflite_dequantization() -> None:
    qp = QuantParams(scale=0.037, zero_point=-5, bits=8)
    q = np.arange(-128, 128, dtype=np.int8)
    codes = requantize_int8(q, qp)
    assert codes.dtype == np.uint8 and np.array_equal(codes.astype(int), np.arange(256))
    expected = np.float32(0.037) * (q.astype(np.float32) - np.float32(-5))
    assert np.array_equal(dequantize_codes(codes, qp), expected)


@pytest.mark.parametrize("bits", range(1, 9))
def test_requantize_is_monotone_covers_all_codes_and_error_is_half_a_step(bits) -> None:
    qp = QuantParams(scale=0.1, zero_point=-128, bits=bits)
    q = np.arange(-128, 128, dtype=np.int8)
    codes = requantize_int8(q, qp)
    assert codes[0] == 0 and codes[-1] == qp.levels
    assert np.all(np.diff(codes.astype(int)) >= 0)
    assert set(codes.tolist()) == set(range(qp.levels + 1))
    exact = dequantize_codes(requantize_int8(q, QuantParams(0.1, -128, 8)), QuantParams(0.1, -128))
    err = np.abs(dequantize_codes(codes, qp) - exact)
    assert err.max() <= qp.code_step / 2 + 1e-5
    # real zero (q == zero_point == -128) survives every bit depth exactly
    assert dequantize_codes(codes[:1], qp)[0] == 0.0


def test_quantize_float_matches_tflite_rounding_and_clamps() -> None:
    qp = QuantParams(scale=0.5, zero_point=-128)
    x = np.array([0.0, 0.25, 0.75, -0.25, 1000.0, -1000.0, np.nan], dtype=np.float32)
    # 0.25/0.5 = 0.5 rounds away from zero -> 1; -0.5 -> -1
    assert quantize_float_to_int8(x, qp).tolist() == [-128, -127, -126, -128, 127, -128, -128]


@pytest.mark.parametrize(
    "kwargs", [dict(bits=0), dict(bits=9), dict(scale=0.0), dict(zero_point=128), dict(bits=True)]
)
def test_quant_params_validate(kwargs) -> None:
    base = dict(scale=0.1, zero_point=0, bits=8) | kwargs
    with pytest.raises(ValueError):
        QuantParams(**base)


def test_quant_rejects_wrong_dtypes_and_out_of_range_codes() -> None:
    qp = QuantParams(0.1, 0, 3)
    with pytest.raises(ValueError, match="int8"):
        requantize_int8(np.zeros(3, np.uint8), qp)
    with pytest.raises(ValueError, match="exceeds 7"):
        dequantize_codes(np.array([8], np.uint8), qp)


# ----------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(
    ("c", "grid"),
    [
        (1, (1, 1)),
        (2, (1, 2)),
        (3, (2, 2)),
        (4, (2, 2)),
        (8, (2, 4)),
        (12, (3, 4)),
        (16, (4, 4)),
        (32, (4, 8)),
        (64, (8, 8)),
        (5, (2, 4)),
    ],
)
def test_grid_matches_bottlenet_for_powers_of_two(c, grid) -> None:
    assert grid_shape(c) == grid


def test_tile_places_channel_c_at_row_major_grid_position_with_zero_padding() -> None:
    x = np.arange(1, 6 * 2 * 3 + 1, dtype=np.uint8).reshape(6, 2, 3)  # grid 2x4, 2 pad tiles
    img = tile(x)
    assert img.shape == (4, 12)
    for ch in range(6):
        r, col = divmod(ch, 4)
        assert np.array_equal(img[r * 2 : r * 2 + 2, col * 3 : col * 3 + 3], x[ch])
    assert not img[2:, 6:].any()
    assert np.array_equal(untile(img, (6, 2, 3)), x)


def test_untile_rejects_wrong_image_shape() -> None:
    with pytest.raises(ValueError, match="must be"):
        untile(np.zeros((5, 5), np.uint8), (6, 2, 3))


# ----------------------------------------------------------------------------- bit packing


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_bits_layout_is_msb_first_and_tight(bits) -> None:
    codes = np.array([(1 << bits) - 1, 0, 1], dtype=np.uint8)
    packed = pack_bits(codes, bits)
    assert len(packed) == (3 * bits + 7) // 8
    bitstring = "".join(f"{b:08b}" for b in packed)
    expected = f"{(1 << bits) - 1:0{bits}b}" + "0" * bits + f"{1:0{bits}b}"
    assert bitstring.startswith(expected) and set(bitstring[3 * bits :]) <= {"0"}
    assert np.array_equal(unpack_bits(packed, 3, bits), codes)


def test_unpack_rejects_bad_length_and_dirty_padding() -> None:
    with pytest.raises(CodecError, match="expected 2"):
        unpack_bits(b"\0", 3, 4)
    with pytest.raises(CodecError, match="padding"):
        unpack_bits(b"\x00\x01", 3, 4)


# ----------------------------------------------------------------------------- codecs

SHAPE = (12, 56, 56)


@pytest.mark.parametrize("codec", feature_codec_names())
@pytest.mark.parametrize("bits", [1, 3, 8])
def test_encode_int8_then_decode(codec, bits) -> None:
    qp = QuantParams(scale=0.05, zero_point=-128, bits=bits)
    fc = codec_for(SHAPE, qp, codec)
    q = quantize_float_to_int8(relu_features(SHAPE), qp)
    codes = requantize_int8(q, qp)
    data = fc.encode_int8(np.transpose(q, (1, 2, 0))[None], layout="NHWC")
    assert data == fc.encode_int8(q, layout="CHW") == fc.encode_codes(codes)
    out = fc.decode(data)
    assert out.dtype == np.uint8 and out.shape == SHAPE
    if fc.lossless:
        assert np.array_equal(out, codes)
    else:
        err = np.abs(out.astype(int) - codes.astype(int))
        assert err.mean() <= max(1.0, 0.05 * qp.levels)
    f = fc.decode_float(data)
    assert f.dtype == np.float32 and np.array_equal(f, dequantize_codes(out, qp))


def test_payload_sizes_of_lossless_codecs() -> None:
    qp = QuantParams(0.05, -128, 3)
    codes = requantize_int8(quantize_float_to_int8(relu_features(SHAPE), qp), qp)
    raw = FeatureCodec(SHAPE, qp, "raw").encode_codes(codes)
    assert len(raw) == (12 * 56 * 56 * 3 + 7) // 8
    # sparse features: zstd must beat the packed size, else it is not doing its job
    assert len(FeatureCodec(SHAPE, qp, "zstd").encode_codes(codes)) < len(raw)


def test_jpeg_image_is_grayscale_tiled_and_scaled_to_full_range() -> None:
    qp = QuantParams(0.05, -128, 2)
    codes = np.zeros(SHAPE, np.uint8)
    codes[5] = 3  # channel 5 at grid (1, 1) of a 3x4 grid, max code -> gray 255
    data = FeatureCodec(SHAPE, qp, "png").encode_codes(codes)
    img = np.asarray(Image.open(io.BytesIO(data)))
    assert img.shape == (3 * 56, 4 * 56)
    assert (img[56:112, 56:112] == 255).all() and img.sum() == 255 * 56 * 56
    jpeg = FeatureCodec(SHAPE, qp, "jpeg", {"quality": 90}).encode_codes(codes)
    with Image.open(io.BytesIO(jpeg)) as im:
        assert im.format == "JPEG" and im.mode == "L" and im.size == (224, 168)


def test_roundtrip_float_equals_the_wire_path() -> None:
    qp = QuantParams(0.05, -128, 4)
    x = np.stack([relu_features(SHAPE, seed=s) for s in range(3)])
    for codec in ("raw", "jpeg"):
        fc = FeatureCodec(SHAPE, qp, codec, None)
        out = fc.roundtrip_float(x)
        assert out.shape == x.shape and out.dtype == np.float32
        for i in range(3):
            q = quantize_float_to_int8(x[i], qp)
            assert np.array_equal(out[i], fc.decode_float(fc.encode_int8(q, layout="CHW")))
        assert np.array_equal(fc.roundtrip_float(x[0]), out[0])


@pytest.mark.parametrize(
    ("codec", "params", "needle"),
    [
        ("gzip", None, "unknown codec 'gzip'"),
        ("jpeg", {"quality": 0}, "'quality' must be in 1..100"),
        ("jpeg", {"qualty": 20}, "unknown jpeg parameter 'qualty'"),
        ("zstd", {"level": "3"}, "must be an int"),
        ("raw", {"level": 1}, "unknown raw parameter 'level'"),
        ("png", [], "must be a dict"),
    ],
)
def test_bad_codec_config_is_codec_error_naming_it(codec, params, needle) -> None:
    with pytest.raises(CodecError, match=needle):
        FeatureCodec(SHAPE, QuantParams(0.1, 0), codec, params)


def test_normalize_params_fills_defaults() -> None:
    assert normalize_params("jpeg", None) == {"quality": 20}
    assert normalize_params("zstd", {"level": 9}) == {"level": 9}


@pytest.mark.parametrize("codec", feature_codec_names())
def test_wrong_tensor_or_payload_is_codec_error(codec) -> None:
    qp = QuantParams(0.1, -128, 5)
    fc = codec_for(SHAPE, qp, codec)
    with pytest.raises(CodecError, match="codec expects"):
        fc.encode_int8(np.zeros((1, 56, 56, 11), np.int8))
    with pytest.raises(CodecError, match="int8"):
        fc.encode_int8(np.zeros((1, 56, 56, 12), np.float32))
    with pytest.raises(CodecError, match="layout"):
        fc.encode_int8(np.zeros((1, 56, 56, 12), np.int8), layout="WHC")
    good = fc.encode_codes(np.zeros(SHAPE, np.uint8))
    for bad in (b"", good[:-1], good[: len(good) // 2], good + b"\0"):
        with pytest.raises(CodecError):
            fc.decode(bad)
    # a valid payload for a different shape is refused, not reshaped
    other = codec_for((12, 28, 28), qp, codec).encode_codes(np.zeros((12, 28, 28), np.uint8))
    with pytest.raises(CodecError):
        fc.decode(other)


def test_zstd_frame_announcing_huge_content_is_refused_without_decoding() -> None:
    import zstandard

    fc = FeatureCodec(SHAPE, QuantParams(0.1, -128, 8), "zstd")
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
    with pytest.raises(CodecError, match="expected 37632"):
        fc.decode(bomb)


def test_image_of_wrong_size_is_refused() -> None:
    fc = FeatureCodec(SHAPE, QuantParams(0.1, -128, 8), "png")
    buf = io.BytesIO()
    Image.new("L", (224, 167)).save(buf, format="PNG")
    with pytest.raises(CodecError, match="expected 224×168"):
        fc.decode(buf.getvalue())
    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, format="PNG")  # 400 Mpixel: never decoded
    with pytest.raises(CodecError):
        fc.decode(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (224, 168)).save(buf, format="PNG")
    with pytest.raises(CodecError, match="mode"):
        fc.decode(buf.getvalue())


def test_codes_out_of_range_for_the_bit_depth_are_refused() -> None:
    fc = FeatureCodec((1, 2, 2), QuantParams(0.1, -128, 3), "raw")
    with pytest.raises(CodecError, match="code 8 exceeds 7"):
        fc.encode_codes(np.array([[[0, 8], [1, 2]]], np.uint8))


@pytest.mark.parametrize("codec", feature_codec_names())
def test_one_codec_shared_by_threads_gives_identical_results(codec) -> None:
    from concurrent.futures import ThreadPoolExecutor

    qp = QuantParams(6 / 255, -128, 5)
    fc = codec_for(SHAPE, qp, codec)
    inputs = [quantize_float_to_int8(relu_features(SHAPE, seed=s), qp) for s in range(6)]
    expected = [fc.encode_int8(q, layout="CHW") for q in inputs]

    def work(i: int) -> bool:
        data = fc.encode_int8(inputs[i % 6], layout="CHW")
        return data == expected[i % 6] and np.array_equal(
            fc.decode(data), fc.decode(expected[i % 6])
        )

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(48)))
