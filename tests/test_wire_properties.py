"""Property tests (hypothesis) for the wire package.

Default run: a few hundred examples per property, seconds in total. ``-m slow`` runs the
parser/codec fuzzers with >= 10,000 examples each, the issue's acceptance bar.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wire import protocol
from wire.codecs import FeatureCodec, jpeg_rmse_bound
from wire.errors import CodecError, ProtocolError
from wire.quant import QuantParams, dequantize_codes, requantize_int8
from wire.synthetic import relu_features
from wire.tiling import grid_shape, tile, tiled_shape, untile

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_FAST = settings(max_examples=500, deadline=None)
FUZZ_SLOW = settings(
    max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# ----------------------------------------------------------------------------- strategies

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
small_text = st.text(max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | small_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(small_text, inner, max_size=4),
    max_leaves=12,
)
json_dicts = st.dictionaries(small_text, json_values, max_size=5)
loads = st.builds(protocol.ServerLoad, u32, finite, finite)

# HELLO fields within wire.protocol.HELLO_LIMITS (over-long ones: test_server_hardening.py)
hello_params = st.dictionaries(
    st.text(max_size=protocol.HELLO_LIMITS["codec_param_key"]),
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | finite
    | st.text(max_size=protocol.HELLO_LIMITS["codec_param_value"]),
    max_size=protocol.HELLO_LIMITS["codec_params"],
)
hellos = st.builds(
    protocol.Hello,
    model_id=st.text(min_size=1, max_size=protocol.HELLO_LIMITS["model_id"]),
    tensor_shape=st.tuples(*[st.integers(1, 1 << 16)] * 3),
    dtype=st.text(max_size=protocol.HELLO_LIMITS["dtype"]),
    scale=st.floats(min_value=1e-30, max_value=1e30),
    zero_point=st.integers(-128, 127),
    bits=st.integers(1, 8),
    codec=st.text(max_size=protocol.HELLO_LIMITS["codec"]),
    codec_params=hello_params,
    device_name=st.text(max_size=protocol.HELLO_LIMITS["device_name"]),
    max_payload=st.integers(1, 2**32 - 1),
    token_id=st.none() | st.text(max_size=protocol.HELLO_LIMITS["token_id"]),
)


@st.composite
def replies(draw) -> protocol.Reply:
    k = draw(st.integers(0, 12))
    return protocol.Reply(
        session_id=draw(u32),
        seq=draw(u32),
        top_ids=tuple(draw(st.lists(u32, min_size=k, max_size=k))),
        top_scores=tuple(draw(st.lists(finite, min_size=k, max_size=k))),
        labels=tuple(draw(st.lists(small_text, max_size=12))),
        decode_us=draw(u32),
        queue_us=draw(u32),
        compute_us=draw(u32),
        load=draw(loads),
    )


messages = st.one_of(
    hellos,
    st.builds(protocol.Welcome, u32, json_dicts, loads),
    st.builds(protocol.Frame, u32, u32, u64, st.binary(max_size=300), st.integers(0, 0xFFFF)),
    replies(),
    st.builds(protocol.Ping, u32, u32, u64),
    st.builds(protocol.Pong, u32, u32, u64, loads),
    st.builds(protocol.ErrorMsg, st.sampled_from(protocol.ErrorCode), small_text, u32, u32),
)


def _decode_or_protocol_error(parts) -> None:
    try:
        msg = protocol.decode_message(parts, max_payload=4096)
    except ProtocolError:
        return
    assert isinstance(msg, protocol.Message)
    # anything accepted re-encodes to something that decodes to the same message
    assert protocol.decode_message(protocol.encode_message(msg), max_payload=4096) == msg


@st.composite
def mutated_parts(draw) -> list[bytes]:
    parts = [bytearray(p) for p in protocol.encode_message(draw(messages))]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "drop", "add", "head"]))
        if kind in ("drop", "add") or not parts:
            if kind == "drop" and parts:
                parts.pop(draw(st.integers(0, len(parts) - 1)))
            else:
                parts.append(bytearray(draw(st.binary(max_size=40))))
            continue
        p = parts[draw(st.integers(0, len(parts) - 1))]
        pos = draw(st.integers(0, max(len(p) - 1, 0)))
        if kind == "flip" and p:
            p[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and p:
            p[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            del p[pos:]
        elif kind == "insert":
            p[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "head" and len(p) >= 24:
            # rewrite a header field wholesale: lengths, counts, type byte
            start = draw(st.sampled_from([1, 4, 8, 12, 20]))
            width = draw(st.sampled_from([1, 2, 4]))
            p[start : start + width] = draw(st.binary(min_size=width, max_size=width))
    return [bytes(p) for p in parts]


random_parts = st.lists(st.binary(max_size=80), max_size=4)
# random bytes behind a valid envelope, so the per-type parsers are reached
enveloped = st.tuples(st.integers(1, 7), st.binary(max_size=120), st.binary(max_size=60)).map(
    lambda t: [bytes([1, t[0], 0, 0]) + t[1], t[2]][: 1 + (t[0] == 3)]
)

# ----------------------------------------------------------------------------- protocol


@FAST
@given(messages)
def test_every_message_round_trips(msg) -> None:
    assert protocol.decode_message(protocol.encode_message(msg), max_payload=1 << 20) == msg


@FUZZ_FAST
@given(random_parts | enveloped)
def test_parser_raises_only_protocol_errors_on_random_bytes(parts) -> None:
    _decode_or_protocol_error(parts)


@FUZZ_FAST
@given(mutated_parts())
def test_parser_raises_only_protocol_errors_on_mutated_messages(parts) -> None:
    _decode_or_protocol_error(parts)


@pytest.mark.slow
@FUZZ_SLOW
@given(random_parts | enveloped)
def test_parser_fuzz_random_10k(parts) -> None:
    _decode_or_protocol_error(parts)


@pytest.mark.slow
@FUZZ_SLOW
@given(mutated_parts())
def test_parser_fuzz_mutated_10k(parts) -> None:
    _decode_or_protocol_error(parts)


# ----------------------------------------------------------------------------- tiling

chw = st.tuples(st.integers(1, 24), st.integers(1, 8), st.integers(1, 8))


def _bits_of(a: np.ndarray) -> np.ndarray:
    """Bit patterns, so NaN/-0.0 compare exactly: tiling must move values, never alter them."""
    return a.view(np.uint8 if a.itemsize == 1 else np.uint32)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chw.flatmap(lambda s: hnp.arrays(st.sampled_from([np.uint8, np.int8, np.float32]), s)))
def test_tiling_is_a_bijection(x) -> None:
    img = tile(x)
    c, h, w = x.shape
    rows, cols = grid_shape(c)
    assert img.shape == tiled_shape(x.shape) == (rows * h, cols * w)
    assert img.dtype == x.dtype
    assert np.array_equal(_bits_of(untile(img, x.shape)), _bits_of(x))
    # nothing lost, nothing invented: the image is the channels plus zero padding
    pad = np.zeros((rows * cols - c) * h * w, dtype=x.dtype)
    assert np.array_equal(
        np.sort(_bits_of(img), axis=None), np.sort(_bits_of(np.concatenate([x.ravel(), pad])))
    )
    # and the inverse direction: any image with zero padding tiles back to itself
    assert np.array_equal(_bits_of(tile(untile(img, x.shape))), _bits_of(img))


@FAST
@given(st.integers(1, 5000))
def test_grid_follows_bottlenet_width_and_uses_the_fewest_rows(c) -> None:
    rows, cols = grid_shape(c)
    # the paper's width formula, 2**ceil(log2(C)/2), for every C
    assert cols == 2 ** math.ceil(math.log2(c) / 2)
    assert rows * cols >= c > (rows - 1) * cols  # no empty tile row
    assert rows <= cols <= 4 * rows  # near square: never taller than wide, at most 4:1
    if c & (c - 1) == 0:  # power of two: exactly the paper's grid, height 2**floor(log2(C)/2)
        assert rows == 2 ** math.floor(math.log2(c) / 2)


# ----------------------------------------------------------------------------- codecs


@st.composite
def code_tensors(draw, max_c=16, max_hw=24):
    """(shape, bits, codes) in several styles: uniform, sparse ReLU-like, constant, extremes."""
    shape = draw(st.tuples(st.integers(1, max_c), st.integers(1, max_hw), st.integers(1, max_hw)))
    bits = draw(st.integers(1, 8))
    levels = (1 << bits) - 1
    seed = draw(st.integers(0, 2**32 - 1))
    style = draw(st.sampled_from(["uniform", "relu", "constant", "extremes"]))
    rng = np.random.default_rng(seed)
    if style == "uniform":
        codes = rng.integers(0, levels + 1, shape)
    elif style == "relu":
        f = relu_features(shape, seed=seed % 1000, radius=1)
        codes = np.round(f / max(f.max(), 1e-6) * levels)
    elif style == "constant":
        codes = np.full(shape, rng.integers(0, levels + 1))
    else:
        codes = rng.choice([0, levels], shape)
    return shape, bits, codes.astype(np.uint8)


@FAST
@given(code_tensors(), st.sampled_from(["png", "zstd", "raw"]), st.integers(0, 9))
def test_lossless_codecs_round_trip_exactly(t, codec, level) -> None:
    shape, bits, codes = t
    params = {} if codec == "raw" else {"level": level}
    fc = FeatureCodec(shape, QuantParams(0.1, -128, bits), codec, params)
    data = fc.encode_codes(codes)
    assert fc.encode_codes(codes) == data  # deterministic
    assert np.array_equal(fc.decode(data), codes)


@FAST
@given(
    st.tuples(st.integers(1, 8), st.integers(1, 16), st.integers(1, 16)).flatmap(
        lambda s: st.tuples(hnp.arrays(np.int8, s), st.integers(-128, 127), st.integers(1, 8))
    ),
    st.sampled_from(["png", "zstd", "raw"]),
)
def test_lossless_int8_path_equals_requantize_then_dequantize(t, codec) -> None:
    q, zp, bits = t
    qp = QuantParams(0.0173, zp, bits)
    fc = FeatureCodec(q.shape, qp, codec)
    data = fc.encode_int8(q, layout="CHW")
    assert np.array_equal(fc.decode_float(data), dequantize_codes(requantize_int8(q, qp), qp))


@FAST
@given(code_tensors(max_c=12, max_hw=20), st.integers(1, 100))
def test_jpeg_error_is_within_the_documented_bound(t, quality) -> None:
    shape, bits, codes = t
    fc = FeatureCodec(shape, QuantParams(0.1, -128, bits), "jpeg", {"quality": quality})
    data = fc.encode_codes(codes)
    assert fc.encode_codes(codes) == data  # deterministic
    out = fc.decode(data)
    assert out.shape == shape and out.dtype == np.uint8 and int(out.max()) <= (1 << bits) - 1
    rmse = float(np.sqrt(np.mean((out.astype(float) - codes) ** 2)))
    assert rmse <= jpeg_rmse_bound(quality, tiled_shape(shape), bits)


def _mean_jpeg_error(quality: int, seeds=range(3), shape=(12, 28, 28)) -> float:
    qp = QuantParams(6 / 255, -128, 8)
    fc = FeatureCodec(shape, qp, "jpeg", {"quality": quality})
    errs = []
    for s in seeds:
        f = relu_features(shape, seed=s)
        codes = np.round(f / f.max() * 255).astype(np.uint8)
        errs.append(np.abs(fc.decode(fc.encode_codes(codes)).astype(float) - codes).mean())
    return float(np.mean(errs))


def test_jpeg_error_decreases_with_quality_on_average() -> None:
    errs = [_mean_jpeg_error(q) for q in range(10, 101, 10)]
    assert all(b <= a for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] < 0.2 < 5 < errs[0]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 90), st.integers(10, 60), st.integers(0, 1000))
def test_jpeg_error_monotone_for_any_quality_pair(q1, gap, seed) -> None:
    q2 = min(q1 + gap, 100)
    seeds = range(seed, seed + 3)
    assert _mean_jpeg_error(q2, seeds) <= _mean_jpeg_error(q1, seeds)


def _payload_mutations(data: bytes, draw) -> bytes:
    b = bytearray(data)
    kind = draw(st.sampled_from(["flip", "cut", "insert", "random"]))
    if kind == "random" or not b:
        return draw(st.binary(max_size=200))
    pos = draw(st.integers(0, len(b) - 1))
    if kind == "flip":
        b[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "cut":
        del b[pos:]
    else:
        b[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    return bytes(b)


_FUZZ_SHAPE = (5, 12, 10)
_FUZZ_CODECS = {
    (codec, bits): FeatureCodec(_FUZZ_SHAPE, QuantParams(0.1, -128, bits), codec)
    for codec in ("jpeg", "png", "zstd", "raw")
    for bits in (3, 8)
}
_FUZZ_SEEDS = {
    key: fc.encode_codes(
        (relu_features(_FUZZ_SHAPE, 1) * (40 if key[1] == 8 else 1)).astype(np.uint8)
    )
    for key, fc in _FUZZ_CODECS.items()
}


def _codec_fuzz(data) -> None:
    key = data.draw(st.sampled_from(sorted(_FUZZ_CODECS)))
    fc = _FUZZ_CODECS[key]
    payload = _payload_mutations(_FUZZ_SEEDS[key], data.draw)
    try:
        out = fc.decode(payload)
    except CodecError:
        return
    assert out.shape == _FUZZ_SHAPE and out.dtype == np.uint8
    assert int(out.max()) <= (1 << key[1]) - 1


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_codec_decoders_raise_only_codec_errors(data) -> None:
    _codec_fuzz(data)


@pytest.mark.slow
@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_codec_decoders_fuzz_3k(data) -> None:
    _codec_fuzz(data)
