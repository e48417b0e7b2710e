"""Golden hashes pin the exact payload bytes for a fixed input.

Why: the board and the server may run different checkouts; if a refactor changes the bytes
a codec emits (bit order, tiling order, gray scaling, default parameters), old peers decode
garbage without any error. These hashes make that change loud. If one fails after an
*intentional* format change, bump PROTOCOL_VERSION and regenerate the table.

Compressed outputs also depend on the compression library, so those rows are checked only
against the library versions they were recorded with (skipped with a reason otherwise); the
``raw`` rows depend on nothing but our code and are always checked.
"""

from __future__ import annotations

import hashlib

import numpy as np
import PIL.features
import pytest
import zstandard

from wire.codecs import FeatureCodec
from wire.protocol import Frame, Hello, encode_message
from wire.quant import QuantParams

RECORDED_WITH = {
    "zstd": ("libzstd", (1, 5, 7)),
    "png": ("zlib_ng", "2.3.3"),
    "jpeg": ("libjpeg_turbo", "3.2.0"),
}


def _library_version(codec: str):
    name, _ = RECORDED_WITH[codec]
    return zstandard.ZSTD_VERSION if codec == "zstd" else PIL.features.version(name)


def pattern_int8(shape: tuple[int, int, int]) -> np.ndarray:
    """A fixed, RNG-free, ReLU-like int8 tensor (integer arithmetic only: portable)."""
    c, h, w = np.indices(shape, dtype=np.int64)
    v = (c * 37 + h * h * 3 + w * 5 + (h * w) % 11) % 97 - 40
    return (np.maximum(v, 0) * 4 - 128).clip(-128, 127).astype(np.int8)


GOLDEN = [
    (8, "raw", {}, 37632, "fca0c897f8ea96c1b225c9df06ce2d8296bfe56b76253f4124d72daeaf76a9fa"),
    (
        8,
        "zstd",
        {"level": 3},
        6423,
        "4f823624c743c8f4eb47702030d1e02857ae286311af4cd3a79fe2e7affe4f5b",
    ),
    (
        8,
        "png",
        {"level": 6},
        7138,
        "d8696dbde155ff03711631daed1a2bdbc6c40f814890ab3fb87cadaa7c24ca72",
    ),
    (
        8,
        "jpeg",
        {"quality": 20},
        8352,
        "4a6042dbc2302d052c4d67bb489985a58c98f143b08c9f5e137790559c62bce5",
    ),
    (
        8,
        "jpeg",
        {"quality": 90},
        28136,
        "5bc03e395d288e4597c89b0bfa051bb3cb83da2bb2d14fa2a785b1bde45e15d0",
    ),
    (3, "raw", {}, 14112, "b8df85f56630447ac1943c43007c49bfa062b1513a2035c56bddc2b0391b2dc8"),
    (
        3,
        "zstd",
        {"level": 3},
        5602,
        "916038f16dd29e286ea11065f2d642ee6f1325a4f4bea43760e2af13cd4cf643",
    ),
    (
        3,
        "png",
        {"level": 6},
        5665,
        "7dfb9adff6258a634e96d806427bc79f6b1575166917f38f5c3b287334ade618",
    ),
    (
        3,
        "jpeg",
        {"quality": 20},
        8405,
        "98ab41b9b221e1f54912a9a47b268818748fdda56b095fb5065c41ac4d106b82",
    ),
    (
        3,
        "jpeg",
        {"quality": 90},
        28366,
        "4908f187cda26e0df029c811a6a3930aaa77dbf8549463f0f8db1afbbfb4061f",
    ),
]


@pytest.mark.parametrize(("bits", "codec", "params", "size", "digest"), GOLDEN)
def test_codec_output_bytes_are_pinned(bits, codec, params, size, digest) -> None:
    if codec in RECORDED_WITH and _library_version(codec) != RECORDED_WITH[codec][1]:
        pytest.skip(f"golden recorded with {RECORDED_WITH[codec]}, have {_library_version(codec)}")
    x = pattern_int8((12, 56, 56))
    fc = FeatureCodec((12, 56, 56), QuantParams(0.05, -128, bits), codec, params)
    data = fc.encode_int8(x, layout="CHW")
    assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest)
    # and the same bytes from the head's native NHWC layout
    assert fc.encode_int8(np.transpose(x, (1, 2, 0))[None]) == data


def test_protocol_bytes_are_pinned() -> None:
    hello = Hello("m", (2, 28, 28), "int8", 0.5, -128, 4, "jpeg", {"quality": 20}, "cam")
    (part,) = encode_message(hello)
    assert part == (
        b"\x01\x01\x00\x00\x00\x00\x00\xc6"
        b'{"model_id":"m","tensor_shape":[2,28,28],"dtype":"int8","scale":0.5,'
        b'"zero_point":-128,"bits":4,"codec":"jpeg","codec_params":{"quality":20},'
        b'"device_name":"cam","max_payload":1048576,"token_id":null}'
    )
    header, payload = encode_message(Frame(1, 2, 3, b"p"))
    assert header.hex() == "010300000000000100000002000000000000000300000001" and payload == b"p"
