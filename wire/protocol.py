"""Messages between the board (ZeroMQ DEALER) and the tail server (ROUTER).

Why this shape: everything static about a stream (model, tensor shape, quantization, codec)
travels once in HELLO, so the per-frame overhead is a fixed 24-byte binary header. Control
messages that happen once per session (HELLO, WELCOME, ERROR) carry a small JSON body because
readability and extensibility matter more there than bytes; the per-frame and per-heartbeat
messages (FRAME, REPLY, PING, PONG) are compact fixed binary.

Every message is a list of ZeroMQ parts. Part 0 always starts with the same 4-byte envelope
``version u8, type u8, flags u16`` (big-endian) so a receiver can reject a foreign version
before reading anything else. FRAME puts its payload in a second part so the codec bytes are
never copied into a header buffer. Byte layouts are documented in ``docs/wire.md``.

``decode_message`` is the only parser; it raises nothing but ``ProtocolError`` subclasses,
checks every declared length against the bytes actually received, and rejects a payload over
the negotiated maximum before touching (or allocating) it.
"""

from __future__ import annotations

import json
import math
import numbers
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Annotated, Any, Optional, Union

from wire.errors import (
    BadVersion,
    FieldTooLong,
    LengthMismatch,
    MalformedBody,
    PayloadTooLarge,
    ProtocolError,
    TruncatedMessage,
    UnknownMessageType,
)
from wire.schema import Meta, Section, Violation, convert

PROTOCOL_VERSION = 1
DEFAULT_MAX_PAYLOAD = 1 << 20
#: Upper bound for a JSON control body (HELLO/WELCOME/ERROR). These are a few hundred bytes in
#: practice; the cap keeps a hostile peer from making the parser chew megabytes of JSON.
MAX_CONTROL_BODY = 64 * 1024

#: Bounds of HELLO's free-form fields, in characters (code points) for strings. Why: the
#: server logs what a HELLO says (device_name, model_id, codec), so an unbounded field lets a
#: peer turn each 64 KiB body into 64 KiB of log. ``device_name`` fits any DNS host name
#: (253); ``model_id`` is a 64-hex content hash in practice. Over-long fields are refused by
#: both ``encode_message`` (ValueError) and ``decode_message`` (``FieldTooLong``).
HELLO_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "model_id": 128,
        "dtype": 16,
        "codec": 16,
        "device_name": 255,
        "token_id": 128,
        "codec_params": 8,  # entries
        "codec_param_key": 32,  # characters of each key
        "codec_param_value": 64,  # characters of a string value
    }
)

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1

_ENVELOPE = struct.Struct(">BBH")  # version, type, flags
_FRAME_HEADER = struct.Struct(">BBHIIQI")  # + session, seq, capture_ts_us, payload_len
_PING = struct.Struct(">BBHIIQ")  # + session, seq, ts_us
_LOAD = struct.Struct(">Idd")  # queue_depth, utilization, compute_ms
_JSON_HEADER = struct.Struct(">BBHI")  # + body_len
_REPLY_FIXED = struct.Struct(">BBHIIIII")  # + session, seq, decode_us, queue_us, compute_us
_REPLY_COUNTS = struct.Struct(">BB")  # n_top, n_labels
_LABEL_LEN = struct.Struct(">H")

FRAME_HEADER_SIZE = _FRAME_HEADER.size
assert FRAME_HEADER_SIZE <= 24


class MsgType(IntEnum):
    HELLO = 1
    WELCOME = 2
    FRAME = 3
    REPLY = 4
    PING = 5
    PONG = 6
    ERROR = 7


class ErrorCode(IntEnum):
    VERSION_MISMATCH = 1
    UNKNOWN_MODEL = 2
    UNSUPPORTED_CODEC = 3
    MALFORMED = 4
    PAYLOAD_TOO_LARGE = 5
    UNKNOWN_SESSION = 6
    UNAUTHORIZED = 7
    OVERLOADED = 8
    BAD_TENSOR = 9
    INTERNAL = 10


@dataclass(frozen=True)
class ServerLoad:
    """What the server tells the board about itself, for run-time partition switching."""

    queue_depth: int = 0
    utilization: float = 0.0
    compute_ms: float = 0.0


@dataclass(frozen=True)
class Hello:
    """Session opener from the board: everything that does not change per frame."""

    model_id: str
    tensor_shape: tuple[int, ...]  # (C, H, W) of the bottleneck
    dtype: str  # "int8"
    scale: float
    zero_point: int
    bits: int
    codec: str
    codec_params: dict
    device_name: str
    max_payload: int = DEFAULT_MAX_PAYLOAD
    token_id: str | None = None
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Welcome:
    session_id: int
    capabilities: dict
    load: ServerLoad = field(default_factory=ServerLoad)


@dataclass(frozen=True)
class Frame:
    session_id: int
    seq: int
    capture_ts_us: int
    payload: bytes
    flags: int = 0


@dataclass(frozen=True)
class Reply:
    session_id: int
    seq: int
    top_ids: tuple[int, ...]
    top_scores: tuple[float, ...]
    labels: tuple[str, ...]
    decode_us: int
    queue_us: int
    compute_us: int
    load: ServerLoad = field(default_factory=ServerLoad)


@dataclass(frozen=True)
class Ping:
    session_id: int
    seq: int
    ts_us: int


@dataclass(frozen=True)
class Pong:
    session_id: int
    seq: int
    ts_us: int
    load: ServerLoad = field(default_factory=ServerLoad)


@dataclass(frozen=True)
class ErrorMsg:
    code: ErrorCode
    message: str
    seq: int = 0
    session_id: int = 0


# typing.Union, not ``|``: this alias is evaluated at import, and the board side runs on 3.9
Message = Union[Hello, Welcome, Frame, Reply, Ping, Pong, ErrorMsg]


def error_code_for(exc: ProtocolError) -> ErrorCode:
    """The ERROR code a server should answer with when ``decode_message`` raised ``exc``."""
    if isinstance(exc, BadVersion):
        return ErrorCode.VERSION_MISMATCH
    if isinstance(exc, PayloadTooLarge):
        return ErrorCode.PAYLOAD_TOO_LARGE
    return ErrorCode.MALFORMED


# ----------------------------------------------------------------------------- encoding


def _check_uint(name: str, value: Any, limit: int) -> int:
    """Python or numpy integer in range -> int (numpy ints come straight from torch/numpy)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int in 0..{limit}, got {value!r}")
    value = int(value)
    if not 0 <= value <= limit:
        raise ValueError(f"{name} must be an int in 0..{limit}, got {value!r}")
    return value


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _pack_load(load: ServerLoad) -> bytes:
    return _LOAD.pack(
        _check_uint("load.queue_depth", load.queue_depth, _U32_MAX),
        _check_float("load.utilization", load.utilization),
        _check_float("load.compute_ms", load.compute_ms),
    )


def _load_dict(load: ServerLoad) -> dict[str, Any]:
    _pack_load(load)  # validates
    return {
        "queue_depth": int(load.queue_depth),
        "utilization": float(load.utilization),
        "compute_ms": float(load.compute_ms),
    }


def _json_part(mtype: MsgType, body: dict[str, Any], version: int = PROTOCOL_VERSION) -> bytes:
    try:
        raw = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # non-JSON value, NaN, circular reference
        raise ValueError(f"{mtype.name} body is not representable as JSON: {exc}") from None
    if len(raw) > MAX_CONTROL_BODY:
        raise ValueError(f"{mtype.name} body is {len(raw)} bytes, over {MAX_CONTROL_BODY}")
    return _JSON_HEADER.pack(version, mtype, 0, len(raw)) + raw


def encode_message(msg: Message) -> list[bytes]:
    """Serialize ``msg`` to ZeroMQ multipart parts (no routing identity).

    Raises ``ValueError`` when a field cannot be represented (out-of-range int, NaN, ...):
    that is a bug on the sending side, not a wire condition.
    """
    if isinstance(msg, Frame):
        header = _FRAME_HEADER.pack(
            PROTOCOL_VERSION,
            MsgType.FRAME,
            _check_uint("flags", msg.flags, 0xFFFF),
            _check_uint("session_id", msg.session_id, _U32_MAX),
            _check_uint("seq", msg.seq, _U32_MAX),
            _check_uint("capture_ts_us", msg.capture_ts_us, _U64_MAX),
            _check_uint("payload length", len(msg.payload), _U32_MAX),
        )
        return [header, bytes(msg.payload)]
    if isinstance(msg, (Ping, Pong)):
        mtype = MsgType.PING if isinstance(msg, Ping) else MsgType.PONG
        head = _PING.pack(
            PROTOCOL_VERSION,
            mtype,
            0,
            _check_uint("session_id", msg.session_id, _U32_MAX),
            _check_uint("seq", msg.seq, _U32_MAX),
            _check_uint("ts_us", msg.ts_us, _U64_MAX),
        )
        return [head + _pack_load(msg.load) if isinstance(msg, Pong) else head]
    if isinstance(msg, Reply):
        return [_encode_reply(msg)]
    if isinstance(msg, Hello):
        _check_uint("version", msg.version, 0xFF)
        body = {
            "model_id": msg.model_id,
            "tensor_shape": [int(d) for d in msg.tensor_shape],
            "dtype": msg.dtype,
            "scale": float(msg.scale),
            "zero_point": int(msg.zero_point),
            "bits": int(msg.bits),
            "codec": msg.codec,
            "codec_params": dict(msg.codec_params),
            "device_name": msg.device_name,
            "max_payload": int(msg.max_payload),
            "token_id": msg.token_id,
        }
        _validate_hello_body(body, error=ValueError)
        return [_json_part(MsgType.HELLO, body, msg.version)]
    if isinstance(msg, Welcome):
        body = {
            "session_id": _check_uint("session_id", msg.session_id, _U32_MAX),
            "capabilities": dict(msg.capabilities),
            "load": _load_dict(msg.load),
        }
        return [_json_part(MsgType.WELCOME, body)]
    if isinstance(msg, ErrorMsg):
        body = {
            "code": int(ErrorCode(msg.code)),
            "message": str(msg.message),
            "seq": _check_uint("seq", msg.seq, _U32_MAX),
            "session_id": _check_uint("session_id", msg.session_id, _U32_MAX),
        }
        return [_json_part(MsgType.ERROR, body)]
    raise TypeError(f"not a wire message: {type(msg).__name__}")


def _encode_reply(msg: Reply) -> bytes:
    n = len(msg.top_ids)
    if len(msg.top_scores) != n:
        raise ValueError(f"reply has {n} top_ids but {len(msg.top_scores)} top_scores")
    if n > 255 or len(msg.labels) > 255:
        raise ValueError("reply carries at most 255 top-k entries and 255 labels")
    out = bytearray(
        _REPLY_FIXED.pack(
            PROTOCOL_VERSION,
            MsgType.REPLY,
            0,
            _check_uint("session_id", msg.session_id, _U32_MAX),
            _check_uint("seq", msg.seq, _U32_MAX),
            _check_uint("decode_us", msg.decode_us, _U32_MAX),
            _check_uint("queue_us", msg.queue_us, _U32_MAX),
            _check_uint("compute_us", msg.compute_us, _U32_MAX),
        )
    )
    out += _pack_load(msg.load)
    out += _REPLY_COUNTS.pack(n, len(msg.labels))
    out += struct.pack(f">{n}I", *(_check_uint("top_ids[]", i, _U32_MAX) for i in msg.top_ids))
    out += struct.pack(f">{n}d", *(_check_float("top_scores[]", s) for s in msg.top_scores))
    for label in msg.labels:
        raw = str(label).encode()
        out += _LABEL_LEN.pack(_check_uint("label length", len(raw), 0xFFFF)) + raw
    return bytes(out)


# ----------------------------------------------------------------------------- decoding


def _as_buffer(part: Any, index: int) -> memoryview:
    try:
        view = memoryview(part)
    except TypeError:
        raise MalformedBody(f"part {index} is not bytes-like ({type(part).__name__})") from None
    if view.ndim != 1 or view.itemsize != 1:
        try:
            view = view.cast("B")
        except (TypeError, ValueError):
            raise MalformedBody(f"part {index} is not a flat byte buffer") from None
    return view


def _exact_length(what: str, got: int, want: int) -> None:
    if got < want:
        raise TruncatedMessage(f"{what}: {got} bytes, expected {want}")
    if got > want:
        raise LengthMismatch(f"{what}: {got} bytes, expected {want}")


def _part_count(mtype: MsgType, got: int, want: int) -> None:
    if got < want:
        raise TruncatedMessage(f"{mtype.name}: {got} parts, expected {want}")
    if got > want:
        raise LengthMismatch(f"{mtype.name}: {got} parts, expected {want}")


def decode_message(parts: Sequence[bytes], *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> Message:
    """Parse ZeroMQ parts into a message. Raises only ``ProtocolError`` subclasses."""
    try:
        return _decode(parts, max_payload)
    except ProtocolError:
        raise
    except Exception as exc:  # a parser bug must still not kill the caller's loop
        raise MalformedBody(f"unparseable message ({type(exc).__name__}: {exc})") from exc


def _decode(parts: Sequence[bytes], max_payload: int) -> Message:
    if isinstance(parts, (bytes, bytearray, memoryview, str)):
        raise MalformedBody("expected a sequence of parts, got a single buffer")
    try:
        parts = list(parts)
    except TypeError:
        raise MalformedBody(f"expected a sequence of parts, got {type(parts).__name__}") from None
    if not parts:
        raise TruncatedMessage("no parts")
    head = _as_buffer(parts[0], 0)
    if len(head) < _ENVELOPE.size:
        raise TruncatedMessage(f"envelope: {len(head)} bytes, expected {_ENVELOPE.size}")
    version, raw_type, _flags = _ENVELOPE.unpack_from(head)
    if version != PROTOCOL_VERSION:
        raise BadVersion(
            f"protocol version {version}, this side speaks {PROTOCOL_VERSION}", version
        )
    try:
        mtype = MsgType(raw_type)
    except ValueError:
        raise UnknownMessageType(f"message type {raw_type}") from None

    if mtype is MsgType.FRAME:
        return _decode_frame(parts, head, max_payload)
    _part_count(mtype, len(parts), 1)
    if mtype in (MsgType.PING, MsgType.PONG):
        want = _PING.size + (_LOAD.size if mtype is MsgType.PONG else 0)
        _exact_length(mtype.name, len(head), want)
        _, _, _, session, seq, ts = _PING.unpack_from(head)
        if mtype is MsgType.PING:
            return Ping(session, seq, ts)
        return Pong(session, seq, ts, _unpack_load(head, _PING.size))
    if mtype is MsgType.REPLY:
        return _decode_reply(head)
    body = _json_body(mtype, head)
    if mtype is MsgType.HELLO:
        _validate_hello_body(body, error=MalformedBody)
        return Hello(
            model_id=body["model_id"],
            tensor_shape=tuple(body["tensor_shape"]),
            dtype=body["dtype"],
            scale=float(body["scale"]),
            zero_point=body["zero_point"],
            bits=body["bits"],
            codec=body["codec"],
            codec_params=body["codec_params"],
            device_name=body["device_name"],
            max_payload=body["max_payload"],
            token_id=body["token_id"],
            version=version,
        )
    if mtype is MsgType.WELCOME:
        _require_keys(body, {"session_id": int, "capabilities": dict, "load": dict}, "WELCOME")
        return Welcome(
            session_id=_body_uint(body, "session_id", _U32_MAX),
            capabilities=body["capabilities"],
            load=_load_from_dict(body["load"]),
        )
    # ERROR
    _require_keys(body, {"code": int, "message": str, "seq": int, "session_id": int}, "ERROR")
    try:
        code = ErrorCode(body["code"])
    except ValueError:
        raise MalformedBody(f"ERROR: unknown error code {body['code']}") from None
    return ErrorMsg(
        code=code,
        message=body["message"],
        seq=_body_uint(body, "seq", _U32_MAX),
        session_id=_body_uint(body, "session_id", _U32_MAX),
    )


def _decode_frame(parts: list[Any], head: memoryview, max_payload: int) -> Frame:
    if len(head) < FRAME_HEADER_SIZE:
        raise TruncatedMessage(f"FRAME header: {len(head)} bytes, expected {FRAME_HEADER_SIZE}")
    if len(head) > FRAME_HEADER_SIZE:
        raise LengthMismatch(f"FRAME header: {len(head)} bytes, expected {FRAME_HEADER_SIZE}")
    _, _, flags, session, seq, ts, payload_len = _FRAME_HEADER.unpack_from(head)
    if payload_len > max_payload:
        raise PayloadTooLarge(f"FRAME payload of {payload_len} bytes exceeds {max_payload}")
    _part_count(MsgType.FRAME, len(parts), 2)
    part = parts[1]
    view = _as_buffer(part, 1)
    _exact_length("FRAME payload", len(view), payload_len)
    payload = part if type(part) is bytes else view.tobytes()
    return Frame(session, seq, ts, payload, flags)


def _unpack_load(buf: memoryview, offset: int) -> ServerLoad:
    depth, util, compute = _LOAD.unpack_from(buf, offset)
    if not (math.isfinite(util) and math.isfinite(compute)):
        raise MalformedBody("server load carries a non-finite number")
    return ServerLoad(depth, util, compute)


def _decode_reply(head: memoryview) -> Reply:
    fixed = _REPLY_FIXED.size + _LOAD.size + _REPLY_COUNTS.size
    if len(head) < fixed:
        raise TruncatedMessage(f"REPLY: {len(head)} bytes, expected at least {fixed}")
    _, _, _, session, seq, dec_us, q_us, comp_us = _REPLY_FIXED.unpack_from(head)
    load = _unpack_load(head, _REPLY_FIXED.size)
    n, n_labels = _REPLY_COUNTS.unpack_from(head, _REPLY_FIXED.size + _LOAD.size)
    pos = fixed
    need = pos + 12 * n + 2 * n_labels
    if len(head) < need:
        raise TruncatedMessage(f"REPLY: {len(head)} bytes, expected at least {need}")
    ids = struct.unpack_from(f">{n}I", head, pos)
    pos += 4 * n
    scores = struct.unpack_from(f">{n}d", head, pos)
    pos += 8 * n
    if not all(math.isfinite(s) for s in scores):
        raise MalformedBody("REPLY: non-finite score")
    labels = []
    for i in range(n_labels):
        if len(head) < pos + 2:
            raise TruncatedMessage(f"REPLY: label {i} length missing")
        (length,) = _LABEL_LEN.unpack_from(head, pos)
        pos += 2
        if len(head) < pos + length:
            raise TruncatedMessage(f"REPLY: label {i} needs {length} bytes")
        try:
            labels.append(bytes(head[pos : pos + length]).decode())
        except UnicodeDecodeError:
            raise MalformedBody(f"REPLY: label {i} is not UTF-8") from None
        pos += length
    if pos != len(head):
        raise LengthMismatch(f"REPLY: {len(head) - pos} trailing bytes")
    return Reply(session, seq, ids, scores, tuple(labels), dec_us, q_us, comp_us, load)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedBody(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise MalformedBody(f"non-finite number {name} in JSON body")


def _finite_float(text: str) -> float:
    # "1e999" is valid JSON but parses to inf, which nothing downstream can use or re-encode
    value = float(text)
    if not math.isfinite(value):
        raise MalformedBody(f"number {text[:40]} overflows a double")
    return value


def _json_body(mtype: MsgType, head: memoryview) -> dict[str, Any]:
    if len(head) < _JSON_HEADER.size:
        raise TruncatedMessage(f"{mtype.name}: {len(head)} bytes, expected >= {_JSON_HEADER.size}")
    (_, _, _, body_len) = _JSON_HEADER.unpack_from(head)
    if body_len > MAX_CONTROL_BODY:
        raise PayloadTooLarge(f"{mtype.name} body of {body_len} bytes exceeds {MAX_CONTROL_BODY}")
    _exact_length(f"{mtype.name} body", len(head) - _JSON_HEADER.size, body_len)
    raw = bytes(head[_JSON_HEADER.size :])
    try:
        body = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedBody(f"{mtype.name} body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedBody(f"{mtype.name} body must be a JSON object")
    return body


def _clip(value: Any, limit: int = 40) -> str:
    """repr() of a peer-supplied value, cut short: error messages must not echo 64 KiB."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require_keys(body: dict[str, Any], spec: dict[str, Any], what: str, error=MalformedBody):
    for key in body:
        if key not in spec:
            raise error(f"{what}: unknown key {_clip(key)}")
    for key, kind in spec.items():
        if key not in body:
            raise error(f"{what}: missing key {key!r}")
        value = body[key]
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is None:
            ok = True
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise error(f"{what}: key {key!r} has type {type(value).__name__}")


def _body_uint(body: dict[str, Any], key: str, limit: int, error=MalformedBody) -> int:
    value = body[key]
    if not 0 <= value <= limit:
        raise error(f"key {key!r} out of range 0..{limit}: {value}")
    return value


def _load_from_dict(d: dict[str, Any]) -> ServerLoad:
    _require_keys(d, {"queue_depth": int, "utilization": float, "compute_ms": float}, "load")
    return ServerLoad(
        _body_uint(d, "queue_depth", _U32_MAX), float(d["utilization"]), float(d["compute_ms"])
    )


# The HELLO body, declared once: types, bounds and HELLO_LIMITS in one place, checked by
# wire.schema (msgspec) for the encoder and the decoder alike. Every key is required;
# token_id may be null. Aliases, not annotations with ``|``: msgspec evaluates them on 3.9.
_ParamValue = Union[
    None, bool, int, float, Annotated[str, Meta(max_length=HELLO_LIMITS["codec_param_value"])]
]
_TokenId = Optional[Annotated[str, Meta(max_length=HELLO_LIMITS["token_id"])]]
_Dim = Annotated[int, Meta(ge=1, le=1 << 16)]
_ModelId = Annotated[str, Meta(min_length=1, max_length=HELLO_LIMITS["model_id"])]
_Dtype = Annotated[str, Meta(max_length=HELLO_LIMITS["dtype"])]
_Codec = Annotated[str, Meta(max_length=HELLO_LIMITS["codec"])]
_DeviceName = Annotated[str, Meta(max_length=HELLO_LIMITS["device_name"])]
_CodecParams = Annotated[
    dict[Annotated[str, Meta(max_length=HELLO_LIMITS["codec_param_key"])], _ParamValue],
    Meta(max_length=HELLO_LIMITS["codec_params"]),
]


class _HelloBody(Section):
    model_id: _ModelId
    tensor_shape: Annotated[tuple[_Dim, ...], Meta(min_length=3, max_length=3)]  # (C, H, W)
    dtype: _Dtype
    scale: Annotated[float, Meta(gt=0)]
    zero_point: Annotated[int, Meta(ge=-128, le=127)]
    bits: Annotated[int, Meta(ge=1, le=8)]
    codec: _Codec
    codec_params: _CodecParams
    device_name: _DeviceName
    max_payload: Annotated[int, Meta(ge=1, le=_U32_MAX)]
    token_id: _TokenId


def _validate_hello_body(body: dict[str, Any], *, error: type[Exception]) -> None:
    """Structural checks shared by encoder (ValueError) and decoder (MalformedBody); a field
    over its HELLO_LIMITS bound is :class:`FieldTooLong` for the decoder.

    Semantic checks (is the codec supported, does the shape match the model) belong to the
    server, which answers with the specific ErrorCode.
    """

    def refuse(problem: Violation) -> Exception:
        message = f"HELLO: {problem.message}"
        if problem.limit is not None and issubclass(error, MalformedBody):
            return FieldTooLong(message, problem.key, problem.length or 0, problem.limit)
        return error(message)

    convert(body, _HelloBody, on_error=refuse)
