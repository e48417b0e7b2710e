"""A minimal synchronous DEALER client for the tail server.

Why it lives here: the tests, the benchmark and health checks need to speak the protocol
without the whole board daemon (``device/``, which owns capture, the TFLite head and
partition switching). This is the thin, blocking request/response view of the same wire
messages, with explicit socket lifetime (linger set, closed on exit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType

import zmq

from wire import protocol


class ClientTimeout(TimeoutError):
    """No answer from the server within the timeout."""


class ServerError(RuntimeError):
    """The server answered with a typed ERROR."""

    def __init__(self, error: protocol.ErrorMsg) -> None:
        super().__init__(f"{error.code.name}: {error.message}")
        self.error = error


@dataclass
class CurveClientKeys:
    """Client key pair + the server's public key, all z85 bytes."""

    public: bytes
    secret: bytes
    server_public: bytes


@dataclass
class TailClient:
    """One DEALER connection; ``hello()`` then ``infer()`` / ``ping()``."""

    endpoint: str
    context: zmq.Context | None = None
    curve: CurveClientKeys | None = None
    timeout_s: float = 10.0
    session_id: int = 0
    capabilities: dict = field(default_factory=dict)
    _seq: int = 0

    def __post_init__(self) -> None:
        self._own_context = self.context is None
        self.context = self.context or zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.linger = 0
        if self.curve is not None:
            self.socket.curve_publickey = self.curve.public
            self.socket.curve_secretkey = self.curve.secret
            self.socket.curve_serverkey = self.curve.server_public
        self.socket.connect(self.endpoint)

    # ------------------------------------------------------------------ raw

    def send(self, msg: protocol.Message) -> None:
        self.socket.send_multipart(protocol.encode_message(msg))

    def send_parts(self, parts: list[bytes]) -> None:
        self.socket.send_multipart(parts)

    def receive(self, timeout_s: float | None = None) -> protocol.Message:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if not self.socket.poll(int(timeout * 1000)):
            raise ClientTimeout(f"no answer from {self.endpoint} within {timeout:.1f} s")
        return protocol.decode_message(self.socket.recv_multipart(), max_payload=1 << 24)

    def request(self, msg: protocol.Message, timeout_s: float | None = None) -> protocol.Message:
        self.send(msg)
        return self.receive(timeout_s)

    # ------------------------------------------------------------------ protocol

    def hello(self, hello: protocol.Hello) -> protocol.Welcome:
        answer = self.request(hello)
        if isinstance(answer, protocol.ErrorMsg):
            raise ServerError(answer)
        if not isinstance(answer, protocol.Welcome):
            raise RuntimeError(f"expected WELCOME, got {type(answer).__name__}")
        self.session_id = answer.session_id
        self.capabilities = answer.capabilities
        return answer

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def frame(self, payload: bytes, seq: int | None = None) -> protocol.Frame:
        return protocol.Frame(
            session_id=self.session_id,
            seq=self.next_seq() if seq is None else seq,
            capture_ts_us=time.time_ns() // 1000,
            payload=payload,
        )

    def infer(self, payload: bytes) -> protocol.Reply:
        frame = self.frame(payload)
        answer = self.request(frame)
        if isinstance(answer, protocol.ErrorMsg):
            raise ServerError(answer)
        if not isinstance(answer, protocol.Reply) or answer.seq != frame.seq:
            raise RuntimeError(f"expected REPLY seq {frame.seq}, got {answer!r}"[:300])
        return answer

    def ping(self) -> protocol.Pong:
        answer = self.request(
            protocol.Ping(self.session_id, self.next_seq(), time.time_ns() // 1000)
        )
        if isinstance(answer, protocol.ErrorMsg):
            raise ServerError(answer)
        if not isinstance(answer, protocol.Pong):
            raise RuntimeError(f"expected PONG, got {type(answer).__name__}")
        return answer

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        self.socket.close(0)
        if self._own_context:
            self.context.term()

    def __enter__(self) -> TailClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
