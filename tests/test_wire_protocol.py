"""Frame protocol: round trips, exact byte layout, and typed rejection of bad input."""

from __future__ import annotations

import json
import struct

import pytest

from wire.errors import (
    BadVersion,
    LengthMismatch,
    MalformedBody,
    PayloadTooLarge,
    ProtocolError,
    TruncatedMessage,
    UnknownMessageType,
)
from wire.protocol import (
    DEFAULT_MAX_PAYLOAD,
    FRAME_HEADER_SIZE,
    PROTOCOL_VERSION,
    ErrorCode,
    ErrorMsg,
    Frame,
    Hello,
    MsgType,
    Ping,
    Pong,
    Reply,
    ServerLoad,
    Welcome,
    decode_message,
    encode_message,
    error_code_for,
)

HELLO = Hello(
    model_id="m-1234",
    tensor_shape=(12, 56, 56),
    dtype="int8",
    scale=0.0421,
    zero_point=-128,
    bits=4,
    codec="jpeg",
    codec_params={"quality": 20},
    device_name="pi5-kitchen",
    token_id="tok-1",
)
LOAD = ServerLoad(queue_depth=3, utilization=0.75, compute_ms=4.5)
SAMPLES = [
    HELLO,
    Welcome(session_id=7, capabilities={"codecs": ["jpeg", "raw"]}, load=LOAD),
    Frame(session_id=7, seq=42, capture_ts_us=1_700_000_000_000_000, payload=b"\x01\x02", flags=3),
    Frame(session_id=0, seq=0, capture_ts_us=0, payload=b""),
    Reply(7, 42, (3, 1, 9), (0.5, 0.25, 0.125), ("cat", "dog", "ünïcode"), 120, 30, 4000, LOAD),
    Reply(7, 43, (), (), (), 0, 0, 0, ServerLoad()),
    Ping(7, 5, 123456789),
    Pong(7, 5, 123456789, LOAD),
    ErrorMsg(ErrorCode.UNKNOWN_MODEL, "no model m-1234", seq=1, session_id=7),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg) -> None:
    parts = encode_message(msg)
    assert all(isinstance(p, bytes) for p in parts)
    assert decode_message(parts) == msg


def test_frame_header_layout_is_24_bytes_big_endian() -> None:
    assert FRAME_HEADER_SIZE == 24
    parts = encode_message(Frame(0x01020304, 0x05060708, 0x1122334455667788, b"xyz", 0xABCD))
    assert len(parts) == 2 and parts[1] == b"xyz"
    assert parts[0] == bytes.fromhex("0103abcd01020304050607081122334455667788") + (3).to_bytes(
        4, "big"
    )
    assert parts[0][0] == PROTOCOL_VERSION and parts[0][1] == MsgType.FRAME


def test_decode_accepts_memoryview_and_bytearray_parts() -> None:
    header, payload = encode_message(Frame(1, 2, 3, b"abc"))
    msg = decode_message([bytearray(header), memoryview(payload)])
    assert msg == Frame(1, 2, 3, b"abc") and type(msg.payload) is bytes


def test_payload_larger_than_max_is_rejected_from_the_header_alone() -> None:
    header, _ = encode_message(Frame(1, 2, 3, b"\0" * 100))
    # the payload part is absent: the size check must fire before anything looks at it
    with pytest.raises(PayloadTooLarge):
        decode_message([header], max_payload=99)
    big = struct.pack(">BBHIIQI", 1, MsgType.FRAME, 0, 1, 1, 1, DEFAULT_MAX_PAYLOAD + 1)
    with pytest.raises(PayloadTooLarge):
        decode_message([big, b""])
    assert decode_message(encode_message(Frame(1, 2, 3, b"\0" * 100)), max_payload=100)


@pytest.mark.parametrize(
    ("parts", "exc"),
    [
        ([], TruncatedMessage),
        ([b""], TruncatedMessage),
        ([b"\x01"], TruncatedMessage),
        ([b"\x02\x03\x00\x00" + b"\0" * 20, b""], BadVersion),
        ([b"\x01\x63\x00\x00"], UnknownMessageType),
        ([b"\x01\x03\x00\x00" + b"\0" * 10], TruncatedMessage),
        ([b"\x01\x03\x00\x00" + b"\0" * 30, b""], LengthMismatch),
        (b"\x01\x03\x00\x00", MalformedBody),
        ([12345], MalformedBody),
        (None, MalformedBody),
    ],
)
def test_bad_envelopes_raise_specific_protocol_errors(parts, exc) -> None:
    with pytest.raises(exc):
        decode_message(parts)


def test_payload_length_checked_against_actual_buffer() -> None:
    header, payload = encode_message(Frame(1, 2, 3, b"abcd"))
    with pytest.raises(TruncatedMessage):
        decode_message([header, payload[:-1]])
    with pytest.raises(LengthMismatch):
        decode_message([header, payload + b"!"])
    with pytest.raises(TruncatedMessage):
        decode_message([header])
    with pytest.raises(LengthMismatch):
        decode_message([header, payload, b"extra"])


def test_bad_version_carries_the_received_version_and_maps_to_error_code() -> None:
    parts = encode_message(Hello(**{**HELLO.__dict__, "version": 9}))
    with pytest.raises(BadVersion) as info:
        decode_message(parts)
    assert info.value.version == 9
    assert error_code_for(info.value) is ErrorCode.VERSION_MISMATCH
    assert error_code_for(PayloadTooLarge("x")) is ErrorCode.PAYLOAD_TOO_LARGE
    assert error_code_for(MalformedBody("x")) is ErrorCode.MALFORMED


def _json_msg(mtype: MsgType, body: bytes) -> list[bytes]:
    return [struct.pack(">BBHI", 1, mtype, 0, len(body)) + body]


def _hello_body(**changes) -> bytes:
    body = json.loads(encode_message(HELLO)[0][8:])
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v != "<drop>"}).encode()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (_hello_body(colour="red"), "'colour'"),
        (_hello_body(bits="<drop>"), "missing key 'bits'"),
        (_hello_body(bits=9), "bits"),
        (_hello_body(bits=True), "bits must be an integer, got True"),
        (_hello_body(scale=-1.0), "scale"),
        (_hello_body(zero_point=200), "zero_point"),
        (_hello_body(tensor_shape=[12, 56]), "tensor_shape"),
        (_hello_body(token_id=5), "token_id"),
        (b'{"model_id": "a", "model_id": "b"}', "duplicate key"),
        (_hello_body().replace(b"0.0421", b"NaN"), "non-finite"),
        (_hello_body().replace(b"0.0421", b"1.5e999"), "overflows a double"),
        (b"[" * 30000 + b"]" * 30000, "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_hello_bodies_name_the_problem(body, needle) -> None:
    with pytest.raises(ProtocolError, match=needle):
        decode_message(_json_msg(MsgType.HELLO, body))


def test_json_body_length_must_match_and_is_capped() -> None:
    (part,) = encode_message(HELLO)
    with pytest.raises(TruncatedMessage):
        decode_message([part[:-1]])
    with pytest.raises(LengthMismatch):
        decode_message([part + b" "])
    with pytest.raises(PayloadTooLarge):
        decode_message([struct.pack(">BBHI", 1, MsgType.HELLO, 0, 1 << 30)])


def test_overflowing_float_anywhere_in_a_json_body_is_malformed() -> None:
    body = b'{"session_id":1,"capabilities":{"x":[2e400]},"load":{"queue_depth":0,'
    body += b'"utilization":0.0,"compute_ms":0.0}}'
    with pytest.raises(MalformedBody, match="overflows"):
        decode_message(_json_msg(MsgType.WELCOME, body))


def test_unknown_error_code_is_malformed() -> None:
    body = json.dumps({"code": 99, "message": "x", "seq": 0, "session_id": 0}).encode()
    with pytest.raises(MalformedBody, match="error code 99"):
        decode_message(_json_msg(MsgType.ERROR, body))


def test_reply_with_trailing_or_missing_bytes_is_rejected() -> None:
    (part,) = encode_message(SAMPLES[4])
    with pytest.raises(LengthMismatch):
        decode_message([part + b"\0"])
    for cut in (1, 5, len("ünïcode".encode()) + 2, 60):
        with pytest.raises(TruncatedMessage):
            decode_message([part[:-cut]])


def test_non_finite_floats_in_binary_messages_are_rejected() -> None:
    (part,) = encode_message(Pong(1, 2, 3, LOAD))
    nan = struct.pack(">d", float("nan"))
    with pytest.raises(MalformedBody):
        decode_message([part[:24] + nan + part[32:]])


@pytest.mark.parametrize(
    "msg",
    [
        Frame(-1, 0, 0, b""),
        Frame(0, 1 << 32, 0, b""),
        Ping(0, 0, -5),
        Reply(1, 1, (1, 2), (0.5,), (), 0, 0, 0),
        Reply(1, 1, (1,), (float("nan"),), (), 0, 0, 0),
        Pong(1, 1, 1, ServerLoad(utilization=float("inf"))),
        Hello(**{**HELLO.__dict__, "bits": 0}),
        Hello(**{**HELLO.__dict__, "codec_params": {"q": object()}}),
        Welcome(1, {"x": float("nan")}),
    ],
)
def test_encoding_unrepresentable_fields_raises_value_error(msg) -> None:
    with pytest.raises(ValueError):
        encode_message(msg)


def test_numpy_scalars_from_torch_or_numpy_code_encode_like_python_numbers() -> None:
    import numpy as np

    reply = Reply(
        np.uint32(7),
        np.int64(42),
        tuple(np.array([3, 1], np.int64)),
        tuple(np.array([0.5, 0.25], np.float32)),
        ("a", "b"),
        np.int64(120),
        30,
        np.int32(4000),
        ServerLoad(np.int64(2), np.float32(0.5), 1.5),
    )
    decoded = decode_message(encode_message(reply))
    assert decoded == Reply(
        7, 42, (3, 1), (0.5, 0.25), ("a", "b"), 120, 30, 4000, ServerLoad(2, 0.5, 1.5)
    )
    assert type(decoded.top_ids[0]) is int and type(decoded.top_scores[0]) is float
    hello = Hello(
        **{
            **HELLO.__dict__,
            "tensor_shape": tuple(np.array([12, 56, 56])),
            "scale": np.float32(0.5),
            "zero_point": np.int8(-128),
        }
    )
    assert decode_message(encode_message(hello)).tensor_shape == (12, 56, 56)
