"""The tail server: ZeroMQ ROUTER front-end, decode pool, dynamic batchers, torch tails.

Threads and who owns what (why: ZeroMQ sockets are not thread-safe, and decoding must not
steal time from the compute thread):

    IO thread      owns the ROUTER (and the CURVE monitor socket); parses every message,
                   answers HELLO / PING / errors directly, hands FRAMEs to the decode pool,
                   and sends whatever the other threads put in the outbox.
    decode pool    ``server.decode_threads`` workers: payload -> float32 (C, H, W) via the
                   session's wire FeatureCodec, then into the model's batcher.
    tail backends  ``[tail] backend``: ``local`` = one DynamicBatcher compute thread per model
                   (server/batcher.py), or ``ray`` = Ray Serve deployments reached from an
                   asyncio thread (server/raybackend.py); both implement server.backend.TailBackend.
    batchers       (local) one compute thread per model (server/batcher.py) running the tail under
                   ``torch.inference_mode()`` and posting REPLYs to the outbox.
    auth / metrics zmq.auth's ThreadAuthenticator and prometheus-client's HTTP thread.

Other threads never touch the ROUTER: they append to a thread-safe outbox and write one
byte to a wake-up pipe that the IO thread polls next to the socket.

Use it in-process (tests, the demo, benchmarks)::

    with TailServer(config) as server:     # start() binds; endpoints are in server.endpoints
        ...
    # or: server = TailServer(config).start(); ...; server.stop()

or block in the current thread with ``serve_forever()`` (the CLI, with signal handlers
calling ``request_stop()``).
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zmq
from zmq.utils.monitor import recv_monitor_message

from server.auth import CurveGuard
from server.backend import TailBackend
from server.batcher import DynamicBatcher
from server.config import ServerConfig
from server.isolation import ItemFailure, run_isolated_report
from server.metrics import ServerMetrics
from server.registry import SCALE_TOLERANCE, ModelRegistry, TailModel, load_tail, pick_device
from server.sessions import Session, SessionTable
from wire import protocol
from wire.codecs import CODEC_NAMES, FeatureCodec, codec_class
from wire.entropy_tables import TablesMismatch
from wire.errors import BadVersion, CodecError, PayloadTooLarge, ProtocolError
from wire.logjson import get_logger
from wire.quant import QuantParams

# Frames bigger than this (per ZeroMQ message part) make libzmq drop the connection before
# Python ever sees them; anything smaller but over max_payload gets a typed error reply.
_MAXMSGSIZE_FACTOR = 4
_MAXMSGSIZE_SLACK = 4096
_BURST = 512  # messages handled per poll wake-up before the outbox gets a turn
_HOUSEKEEPING_S = 0.2
_HANDSHAKE_FAILURES = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol_mismatch",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "unauthorized",
}


@dataclass
class InferenceRequest:
    """A decoded FRAME on its way through a batcher."""

    identity: bytes
    session_id: int
    seq: int
    tensor: np.ndarray  # float32 (C, H, W)
    received_ns: int  # when the IO thread read it
    decode_us: int


def max_message_size(max_payload: int) -> int:
    """libzmq's ZMQ_MAXMSGSIZE for the ROUTER: the largest message part it will receive.

    Why a cliff at all: libzmq reads a whole part before Python sees it, so without a cap a
    peer could make the server allocate up to 2**63 bytes. Why 4x max_payload (+ 4 KiB for
    headers): payloads somewhat over the limit still reach the parser and get a typed
    PAYLOAD_TOO_LARGE, which tells a misconfigured device what is wrong; a part larger
    than this makes libzmq drop the connection with no reply (docs/wire.md, "Size limits").
    """
    return max_payload * _MAXMSGSIZE_FACTOR + _MAXMSGSIZE_SLACK


class _Rejected(Exception):
    """A HELLO the server refuses, with the ERROR code to answer."""

    def __init__(self, code: protocol.ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _check_quantization(model: TailModel, hello: protocol.Hello) -> None:
    """HELLO's scale and zero point against what the tail was trained with (tail.json).

    Why: the tail dequantizes every frame of the session with them. A huge finite scale
    (1e300) turns the frames into inf/NaN inside the tail; one 4x off gives activations the
    tail never saw. Either way the answers are garbage, so refuse the session up front.
    """
    zero_point = hello.zero_point
    if isinstance(zero_point, bool) or not isinstance(zero_point, int):
        raise _Rejected(
            protocol.ErrorCode.BAD_TENSOR, f"zero_point must be an int, got {zero_point!r}"
        )
    if not -128 <= zero_point <= 127:
        raise _Rejected(
            protocol.ErrorCode.BAD_TENSOR, f"zero_point {zero_point} is outside -128..127"
        )
    scale = hello.scale
    lo, hi = model.scale_bounds()
    if not (math.isfinite(scale) and lo <= scale <= hi):
        trained = model.trained_quant
        basis = (
            f"tail.json split.quant.scale = {trained.scale:.6g}, within a factor of "
            f"{SCALE_TOLERANCE:g}"
            if trained is not None
            else "tail.json records no split.quant, so only a sanity bound applies"
        )
        raise _Rejected(
            protocol.ErrorCode.BAD_TENSOR,
            f"scale {scale:.6g} is outside [{lo:.6g}, {hi:.6g}] accepted for this tail ({basis})",
        )


def _scores_problem(result: tuple[np.ndarray, np.ndarray]) -> str | None:
    """Why one frame's top-k cannot be sent (None when it can)."""
    if np.isfinite(result[1]).all():
        return None
    return "its scores are NaN/inf (features far outside what the tail was trained on)"


class ServerStartError(RuntimeError):
    """Binding or set-up failed; raised by start() in the caller's thread."""


class TailServer:
    """One server instance: registry + sockets + threads, with explicit start/stop."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.log = get_logger(__name__)
        self.metrics = ServerMetrics()
        compute = config.compute
        if compute.threads:
            torch.set_num_threads(compute.threads)
        if compute.interop_threads:
            with contextlib.suppress(RuntimeError):  # only settable before first use
                torch.set_num_interop_threads(compute.interop_threads)
        self.device = pick_device(compute.device)
        self.registry = ModelRegistry()
        for entry in config.models:
            model = load_tail(entry.tail, entry.manifest, self.device)
            self.registry.add(model)
            self.log.info(
                "model_loaded",
                model_id=model.model_id,
                tail=str(entry.tail),
                input_chw=list(model.input_chw),
                num_classes=model.num_classes,
                device=str(self.device),
                max_batch=entry.batching.max_batch,
                max_wait_us=entry.batching.max_wait_us,
            )
        # Named "batchers" for history: each is the model's TailBackend (local or ray).
        self.batchers: dict[str, TailBackend] = {}
        self._strict_bits: dict[str, bool] = {}
        self._ray: Any = None  # server.raybackend.RayCluster when tail.backend = "ray"
        for entry, model in zip(config.models, self.registry, strict=True):
            self._strict_bits[model.model_id] = entry.strict_bits
        if config.tail.backend == "ray":
            self._ray = self._ray_backends()
        for entry, model in zip(config.models, self.registry, strict=True):
            if self._ray is not None:
                break
            self.batchers[model.model_id] = DynamicBatcher(
                model.model_id[:16],
                lambda items, m=model: self._run_batch(m, items),
                max_batch=entry.batching.max_batch,
                max_wait_us=entry.batching.max_wait_us,
                max_queue=entry.batching.max_queue,
                on_error=lambda items, exc, m=model: self._batch_failed(m, items, exc),
                thread_init=self._thread_init,
            )
        if compute.warmup and self._ray is None:  # Ray replicas warm up themselves
            self._warm_up()
        self.sessions = SessionTable(config.server.max_sessions, config.server.session_idle_s)
        self.endpoints: list[str] = []
        self.metrics_port: int | None = None
        self.public_key: bytes | None = None  # CURVE server public key, when auth is on
        self._outbox: queue.SimpleQueue[tuple[bytes, list[bytes]]] = queue.SimpleQueue()
        self._wake_r = self._wake_w = -1  # wake-up pipe, opened by start()/serve_forever()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._closed = False

    def _ray_backends(self) -> Any:
        """Join the Ray cluster and deploy every tail on it; BackendUnavailable when not.

        Imported here so that the default (local) server never imports Ray.
        """
        from server.raybackend import RayCluster, RayTail

        cluster = RayCluster(self.config.tail, self.log)
        for entry, model in zip(self.config.models, self.registry, strict=True):
            self.batchers[model.model_id] = RayTail(
                cluster,
                model.model_id,
                entry,
                top_k=self.config.server.top_k,
                threads=self.config.compute.threads,
                complete=lambda items, outcomes, s, e, n, m=model: self._post_outcomes(
                    m, items, outcomes, s, e, n
                ),
                fail=lambda items, code, text, m=model: self._post_failure(m, items, code, text),
            )
        cluster.connect()
        return cluster

    def _warm_up(self) -> None:
        """Run every tail at batch 1 and at its max_batch before accepting devices.

        Why: the first calls for a new input shape are slow (TorchScript's profiling
        executor and oneDNN build their kernels then); without this the first devices to
        connect would see seconds of latency and report the server as overloaded.
        """
        for model in self.registry:
            started = time.perf_counter()
            sizes = sorted({1, self.batchers[model.model_id].max_batch})
            for size in sizes:
                batch = np.zeros((size, *model.input_chw), dtype=np.float32)
                for _ in range(2):
                    model.topk(batch, 1)
            self.log.info(
                "model_warm",
                model_id=model.model_id,
                batch_sizes=sizes,
                seconds=round(time.perf_counter() - started, 3),
            )

    # ================================================================== lifecycle

    def start(self, timeout: float = 30.0) -> TailServer:
        """Bind and start all threads; returns once the ROUTER is listening."""
        if self._thread is not None or self._closed:
            raise RuntimeError("a TailServer can be started once")
        self._open_wake_pipe()
        self._thread = threading.Thread(target=self._io_main, name="splitfit-io", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.request_stop()
            raise ServerStartError("server did not become ready in time")
        if self._start_error is not None:
            self._thread.join()
            raise ServerStartError(str(self._start_error)) from self._start_error
        return self

    def serve_forever(self) -> None:
        """Run the IO loop in the calling thread until request_stop() (e.g. from SIGTERM)."""
        if self._thread is not None or self._closed or self._wake_r >= 0:
            raise RuntimeError("a TailServer can be started once")
        self._open_wake_pipe()
        self._io_main()
        if self._start_error is not None:
            raise ServerStartError(str(self._start_error)) from self._start_error

    def _open_wake_pipe(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake_r, self._wake_w = wake_r, wake_w

    def request_stop(self) -> None:
        """Ask the IO loop to stop; safe from signal handlers and any thread."""
        self._stop.set()
        self._wake()

    def stop(self, timeout: float = 60.0) -> None:
        """Graceful stop: finish in-flight batches, flush replies, close sockets, join."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("server IO thread did not stop in time")

    def __enter__(self) -> TailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._ready.is_set() and not self._closed and self._start_error is None

    # ================================================================== IO thread

    def _io_main(self) -> None:
        context = zmq.Context()
        router: zmq.Socket | None = None
        monitor: zmq.Socket | None = None
        guard: CurveGuard | None = None
        try:
            try:
                guard, router, monitor = self._open_sockets(context)
                if self.config.metrics.enabled:
                    self.metrics_port = self.metrics.serve(
                        self.config.metrics.host, self.config.metrics.port
                    )
                self._decoder = ThreadPoolExecutor(
                    self.config.server.decode_threads,
                    thread_name_prefix="splitfit-decode",
                    initializer=self._thread_init,
                )
                for batcher in self.batchers.values():
                    batcher.start()
                if self._ray is not None:
                    self._ray.start_supervisor()
            except BaseException as exc:
                self._start_error = exc
                self.log.error("start_failed", error=str(exc))
                return
            self.log.info(
                "listening",
                endpoints=self.endpoints,
                models=self.registry.ids(),
                metrics_port=self.metrics_port,
                curve=guard is not None,
                device=str(self.device),
                torch_threads=torch.get_num_threads(),
            )
            self._ready.set()
            self._loop(router, monitor)
        finally:
            self._shutdown(context, router, monitor, guard)
            self._ready.set()

    def _open_sockets(
        self, context: zmq.Context
    ) -> tuple[CurveGuard | None, zmq.Socket, zmq.Socket | None]:
        cfg = self.config.server
        guard = None
        if self.config.auth.enabled:
            auth = self.config.auth
            assert auth.server_secret_key is not None and auth.client_keys_dir is not None
            guard = CurveGuard(
                context, auth.server_secret_key, auth.client_keys_dir, self._on_auth_reject
            )
            guard.start()
            self.public_key = guard.public_key
        router = context.socket(zmq.ROUTER)
        router.linger = self.config.server.linger_ms
        router.sndhwm = cfg.sndhwm
        router.rcvhwm = cfg.rcvhwm
        router.maxmsgsize = max_message_size(cfg.max_payload)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        monitor = None
        if guard is not None:
            guard.secure(router)
            monitor = router.get_monitor_socket(
                zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            )
        for endpoint in cfg.bind:
            try:
                router.bind(endpoint)
            except zmq.ZMQError as exc:
                router.close(0)
                if monitor is not None:
                    monitor.close(0)
                if guard is not None:
                    guard.stop()
                raise ServerStartError(f"cannot bind {endpoint}: {exc}") from None
            self.endpoints.append(router.last_endpoint.decode())
        return guard, router, monitor

    def _loop(self, router: zmq.Socket, monitor: zmq.Socket | None) -> None:
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        next_housekeeping = time.monotonic() + _HOUSEKEEPING_S
        while not self._stop.is_set():
            try:
                events = dict(poller.poll(int(_HOUSEKEEPING_S * 1000)))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:
                    continue
                raise
            if router in events:
                for _ in range(_BURST):
                    try:
                        parts = router.recv_multipart(zmq.NOBLOCK, copy=True)
                    except zmq.Again:
                        break
                    try:
                        self._handle(router, parts)
                    except Exception as exc:  # last line of defence: the loop outlives any bug
                        self.metrics.drops.labels(reason="internal").inc()
                        self.log.error("handle_crash", error=repr(exc)[:300])
            if self._wake_r in events:
                self._drain_wake()
            if monitor is not None and monitor in events:
                self._drain_monitor(monitor)
            self._flush(router)
            now = time.monotonic()
            if now >= next_housekeeping:
                self._housekeeping()
                next_housekeeping = now + _HOUSEKEEPING_S

    def _shutdown(
        self,
        context: zmq.Context,
        router: zmq.Socket | None,
        monitor: zmq.Socket | None,
        guard: CurveGuard | None,
    ) -> None:
        self.log.info("stopping", sessions=len(self.sessions))
        if self._decoder is not None:
            self._decoder.shutdown(wait=True)  # decodes in flight reach their batcher
        for batcher in self.batchers.values():
            batcher.stop()  # finishes every queued request
        if self._ray is not None:
            self._ray.stop()
        if router is not None:
            self._flush(router)
            if monitor is not None:
                with contextlib.suppress(zmq.ZMQError):
                    router.disable_monitor()
                monitor.close(0)
            router.close(self.config.server.linger_ms)
        if guard is not None:
            guard.stop()
        context.term()
        self.metrics.close()
        wake_r, wake_w = self._wake_r, self._wake_w
        self._wake_w = -1  # a late request_stop() must not write to a recycled fd
        os.close(wake_w)
        os.close(wake_r)
        self._closed = True
        self.log.info(
            "stopped",
            replies=int(sum(b.items_run for b in self.batchers.values())),
            batches=int(sum(b.batches_run for b in self.batchers.values())),
        )

    # ================================================================== outbox

    def _wake(self) -> None:
        fd = self._wake_w
        if fd < 0:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(fd, b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _post(self, identity: bytes, parts: list[bytes]) -> None:
        """Queue a message for the IO thread (any thread)."""
        self._outbox.put((identity, parts))
        self._wake()

    def _flush(self, router: zmq.Socket) -> None:
        while True:
            try:
                identity, parts = self._outbox.get_nowait()
            except queue.Empty:
                return
            self._send(router, identity, parts)

    def _send(self, router: zmq.Socket, identity: bytes, parts: list[bytes]) -> None:
        try:
            router.send_multipart([identity, *parts], zmq.NOBLOCK)
        except zmq.Again:
            self.metrics.drops.labels(reason="send_hwm").inc()
        except zmq.ZMQError as exc:
            self.metrics.drops.labels(reason="send_error").inc()
            self.log.warning("send_failed", error=str(exc))

    # ================================================================== messages

    def _handle(self, router: zmq.Socket, parts: list[bytes]) -> None:
        """Answer one inbound message; never raises."""
        if len(parts) < 1:
            return
        identity, body = parts[0], parts[1:]
        received_ns = time.monotonic_ns()
        try:
            msg = protocol.decode_message(body, max_payload=self.config.server.max_payload)
        except ProtocolError as exc:
            self.metrics.requests.labels(type="invalid").inc()
            if isinstance(exc, BadVersion):
                code, text = (
                    protocol.ErrorCode.VERSION_MISMATCH,
                    f"{exc} (server speaks {protocol.PROTOCOL_VERSION})",
                )
            elif isinstance(exc, PayloadTooLarge):
                code, text = protocol.ErrorCode.PAYLOAD_TOO_LARGE, str(exc)
            else:
                code, text = protocol.ErrorCode.MALFORMED, f"{exc.__class__.__name__}: {exc}"
            self._error(router, identity, code, text)
            return
        except Exception as exc:  # a decoder bug must not kill the loop
            self.metrics.requests.labels(type="invalid").inc()
            self._error(
                router,
                identity,
                protocol.ErrorCode.INTERNAL,
                f"cannot parse message: {exc.__class__.__name__}",
            )
            self.log.error("parse_crash", error=repr(exc))
            return
        kind = type(msg).__name__.lower()
        self.metrics.requests.labels(type=kind).inc()
        try:
            if isinstance(msg, protocol.Frame):
                self._on_frame(router, identity, msg, received_ns)
            elif isinstance(msg, protocol.Hello):
                self._on_hello(router, identity, msg)
            elif isinstance(msg, protocol.Ping):
                self._on_ping(router, identity, msg)
            elif isinstance(msg, protocol.ErrorMsg):
                # Never answer an error with an error: two peers could ping-pong forever.
                self.metrics.drops.labels(reason="client_error").inc()
                self.log.info(
                    "client_error",
                    code=int(msg.code),
                    message=msg.message[:200],
                )
            else:
                self._error(
                    router,
                    identity,
                    protocol.ErrorCode.MALFORMED,
                    f"a client may not send {type(msg).__name__}",
                )
        except Exception as exc:
            self._error(
                router, identity, protocol.ErrorCode.INTERNAL, f"internal error handling {kind}"
            )
            self.log.error("handler_crash", kind=kind, error=repr(exc))

    def _error(
        self,
        router: zmq.Socket,
        identity: bytes,
        code: protocol.ErrorCode,
        message: str,
        *,
        seq: int = 0,
        session_id: int = 0,
    ) -> None:
        self.metrics.errors.labels(code=code.name).inc()
        self.log.warning(
            "error_reply",
            code=code.name,
            message=message[:300],
            peer=identity.hex(),
            seq=seq,
        )
        reply = protocol.ErrorMsg(code=code, message=message[:1000], seq=seq, session_id=session_id)
        self._send(router, identity, protocol.encode_message(reply))

    def _on_hello(self, router: zmq.Socket, identity: bytes, hello: protocol.Hello) -> None:
        try:
            model, codec = self._negotiate(hello)
        except _Rejected as rejected:
            self._error(router, identity, rejected.code, rejected.message)
            return
        max_payload = min(hello.max_payload, self.config.server.max_payload)
        session, evicted = self.sessions.open(
            identity,
            model_id=model.model_id,
            codec=codec,
            max_payload=max_payload,
            device_name=hello.device_name,
        )
        if evicted is not None:
            self.log.info(
                "session_evicted", session_id=evicted.session_id, device=evicted.device_name
            )
        batcher = self.batchers[model.model_id]
        capabilities: dict[str, Any] = {
            "protocol_version": protocol.PROTOCOL_VERSION,
            "model_id": model.model_id,
            "num_classes": model.num_classes,
            "max_payload": max_payload,
            "max_batch": batcher.max_batch,
            "max_wait_us": batcher.max_wait_ns // 1000,
            "codecs": list(CODEC_NAMES),
            "top_k": min(self.config.server.top_k, model.num_classes),
            "device": str(self.device),
            "curve": self.config.auth.enabled,
        }
        welcome = protocol.Welcome(
            session_id=session.session_id, capabilities=capabilities, load=self._load(model)
        )
        self._send(router, identity, protocol.encode_message(welcome))
        self.metrics.sessions.set(len(self.sessions))
        self.log.info(
            "session_opened",
            session_id=session.session_id,
            device=hello.device_name,
            model_id=model.model_id,
            codec=hello.codec,
            bits=hello.bits,
            peer=identity.hex(),
        )

    def _negotiate(self, hello: protocol.Hello) -> tuple[TailModel, FeatureCodec]:
        """Check a HELLO against the registry; raises _Rejected with the ERROR to send."""
        if hello.version != protocol.PROTOCOL_VERSION:
            raise _Rejected(
                protocol.ErrorCode.VERSION_MISMATCH,
                f"HELLO version {hello.version}, server speaks {protocol.PROTOCOL_VERSION}",
            )
        model = self.registry.get(hello.model_id)
        if model is None:
            raise _Rejected(
                protocol.ErrorCode.UNKNOWN_MODEL, f"model_id {hello.model_id!r} is not served here"
            )
        shape = tuple(hello.tensor_shape)
        if shape != model.input_chw:
            raise _Rejected(
                protocol.ErrorCode.BAD_TENSOR,
                f"tensor_shape {list(shape)} does not match the tail's input_chw {list(model.input_chw)}",
            )
        if hello.dtype != "int8":
            raise _Rejected(
                protocol.ErrorCode.BAD_TENSOR, f"dtype {hello.dtype!r} not supported (int8 only)"
            )
        _check_quantization(model, hello)
        if hello.codec not in CODEC_NAMES:
            raise _Rejected(
                protocol.ErrorCode.UNSUPPORTED_CODEC,
                f"codec {hello.codec!r} not supported; use one of {list(CODEC_NAMES)}",
            )
        expected_bits = model.expected_bits()
        strict = self._strict_bits[model.model_id]
        if strict and expected_bits is not None and hello.bits != expected_bits:
            raise _Rejected(
                protocol.ErrorCode.UNSUPPORTED_CODEC,
                f"the tail was trained on {expected_bits}-bit codes, HELLO offers {hello.bits}",
            )
        if hello.max_payload < 1:
            raise _Rejected(
                protocol.ErrorCode.MALFORMED, f"max_payload must be >= 1, got {hello.max_payload}"
            )
        if codec_class(hello.codec).table_kind and "tables" not in hello.codec_params:
            raise _Rejected(
                protocol.ErrorCode.UNSUPPORTED_CODEC,
                f"codec {hello.codec!r} needs codec_params.tables = the sha256 of its tables",
            )
        try:
            quant = QuantParams(scale=hello.scale, zero_point=hello.zero_point, bits=hello.bits)
            codec = FeatureCodec(
                model.input_chw,
                quant,
                hello.codec,
                dict(hello.codec_params),
                tables=model.codec_tables,
            )
        except TablesMismatch as exc:
            raise _Rejected(
                protocol.ErrorCode.UNSUPPORTED_CODEC, f"entropy tables differ: {exc}"
            ) from None
        except (CodecError, ValueError, TypeError) as exc:
            raise _Rejected(
                protocol.ErrorCode.UNSUPPORTED_CODEC, f"codec/quantization rejected: {exc}"
            ) from None
        return model, codec

    def _session_or_refuse(
        self, router: zmq.Socket, identity: bytes, msg: protocol.Ping | protocol.Frame
    ) -> Session | None:
        """The peer's own session named by ``msg``, or None after an UNKNOWN_SESSION error:
        a session id is honoured only from the identity that opened it."""
        session = self.sessions.lookup(identity, msg.session_id)
        if session is None:
            self._refuse(
                router,
                identity,
                msg,
                protocol.ErrorCode.UNKNOWN_SESSION,
                f"no session {msg.session_id} for this peer; send HELLO first",
            )
        return session

    def _refuse(
        self,
        router: zmq.Socket,
        identity: bytes,
        msg: protocol.Ping | protocol.Frame,
        code: protocol.ErrorCode,
        message: str,
    ) -> None:
        """An error reply about ``msg``: it names the message's own seq and session, which is
        how the device matches it to the frame or ping it sent."""
        self._error(router, identity, code, message, seq=msg.seq, session_id=msg.session_id)

    def _on_ping(self, router: zmq.Socket, identity: bytes, ping: protocol.Ping) -> None:
        # Checked like FRAME: the load report is for devices with a session, and a PONG to any
        # id would let a stranger probe the server (and refresh nobody's session).
        session = self._session_or_refuse(router, identity, ping)
        if session is None:
            return
        model = self.registry.get(session.model_id)
        pong = protocol.Pong(
            session_id=ping.session_id, seq=ping.seq, ts_us=ping.ts_us, load=self._load(model)
        )
        self._send(router, identity, protocol.encode_message(pong))

    def _on_frame(
        self, router: zmq.Socket, identity: bytes, frame: protocol.Frame, received_ns: int
    ) -> None:
        session = self._session_or_refuse(router, identity, frame)
        if session is None:
            return
        if len(frame.payload) > session.max_payload:
            self._refuse(
                router,
                identity,
                frame,
                protocol.ErrorCode.PAYLOAD_TOO_LARGE,
                f"payload of {len(frame.payload)} bytes exceeds the negotiated {session.max_payload}",
            )
            return
        batcher = self.batchers[session.model_id]
        if not batcher.reserve():
            self._refuse(
                router,
                identity,
                frame,
                protocol.ErrorCode.OVERLOADED,
                f"{batcher.queue_depth} requests pending (max_queue {batcher.max_queue})",
            )
            return
        session.frames += 1
        assert self._decoder is not None
        self._decoder.submit(self._decode_job, session, frame, received_ns, batcher)

    # ================================================================== decode pool

    def _thread_init(self) -> None:
        if self.config.compute.threads:
            torch.set_num_threads(self.config.compute.threads)

    def _decode_job(
        self,
        session: Session,
        frame: protocol.Frame,
        received_ns: int,
        batcher: DynamicBatcher[InferenceRequest],
    ) -> None:
        start = time.perf_counter_ns()
        try:
            with session.decode_lock:
                tensor = session.codec.decode_float(frame.payload)
            model = self.registry.get(session.model_id)
            assert model is not None
            if tensor.shape != model.input_chw:
                raise CodecError(f"decoded shape {tensor.shape} != {model.input_chw}")
            if not np.isfinite(tensor).all():  # cheap (µs); keeps inf/NaN out of batches
                raise CodecError("decoded features are not finite (NaN/inf)")
        except Exception as exc:
            batcher.release()
            code = (
                protocol.ErrorCode.BAD_TENSOR
                if isinstance(exc, CodecError | ValueError)
                else protocol.ErrorCode.INTERNAL
            )
            self.metrics.errors.labels(code=code.name).inc()
            self.log.warning(
                "decode_failed",
                session_id=session.session_id,
                error=str(exc)[:200],
            )
            err = protocol.ErrorMsg(
                code=code,
                message=f"payload does not decode to the negotiated tensor: {exc}"[:1000],
                seq=frame.seq,
                session_id=session.session_id,
            )
            self._post(session.identity, protocol.encode_message(err))
            return
        decode_us = (time.perf_counter_ns() - start) // 1000
        self.metrics.latency.labels(stage="decode").observe(decode_us / 1e6)
        batcher.submit(
            InferenceRequest(
                identity=session.identity,
                session_id=session.session_id,
                seq=frame.seq,
                tensor=np.ascontiguousarray(tensor, dtype=np.float32),
                received_ns=received_ns,
                decode_us=decode_us,
            )
        )

    # ================================================================== compute

    def _run_batch(self, model: TailModel, items: list[InferenceRequest]) -> Callable[[], None]:
        """Compute on the batcher thread; the returned closure builds and posts the replies
        after the batcher has booked the batch, so the load they carry includes it.

        Failures are isolated per frame (server/isolation.py): a frame that makes the tail
        raise or produce NaN/inf gets its own ERROR, every other frame its REPLY.
        """
        start_ns = time.monotonic_ns()
        top_k = self.config.server.top_k

        def run(chunk: Sequence[InferenceRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
            ids, scores = model.topk(np.stack([item.tensor for item in chunk]), top_k)
            return list(zip(ids, scores, strict=True))

        report = run_isolated_report(items, run, _scores_problem)
        end_ns = time.monotonic_ns()
        failed = [
            (item, outcome)
            for item, outcome in zip(items, report.outcomes, strict=True)
            if isinstance(outcome, ItemFailure)
        ]
        if report.batch_error is not None or report.rerun:
            m = self.metrics.isolated
            m.labels(model=model.model_id, outcome="rescued").inc(report.rescued)
            self.log.warning(
                "batch_isolated",
                model_id=model.model_id,
                size=len(items),
                error=report.batch_error,
                rerun=report.rerun,
                rescued=report.rescued,
                failed=len(failed),
                failed_sessions=sorted({item.session_id for item, _ in failed})[:8],
            )
        if failed:
            self.metrics.isolated.labels(model=model.model_id, outcome="failed").inc(len(failed))

        def deliver() -> None:
            self._post_outcomes(model, items, report.outcomes, start_ns, end_ns, len(items))

        return deliver

    def _post_outcomes(
        self,
        model: TailModel,
        items: Sequence[InferenceRequest],
        outcomes: Sequence[tuple[np.ndarray, np.ndarray] | ItemFailure],
        start_ns: int,
        end_ns: int,
        batch_size: int,
    ) -> None:
        """Count and post one REPLY (or the frame's own ERROR) per item; any backend, any thread."""
        compute_us = (end_ns - start_ns) // 1000
        load = self._load(model)
        replies = []
        for item, outcome in zip(items, outcomes, strict=True):
            parts = self._reply_parts(model, item, outcome, start_ns, compute_us, load)
            replies.append((item, parts, outcome))
        # Count before sending, so whoever reads a reply also sees it in the metrics.
        m = self.metrics
        answered = [(item, parts) for item, parts, o in replies if not isinstance(o, ItemFailure)]
        m.batch_size.labels(model=model.model_id).observe(batch_size)
        m.latency.labels(stage="compute").observe(compute_us / 1e6)
        m.replies.labels(model=model.model_id).inc(len(answered))
        for item, _ in answered:
            queue_us = max(0, (start_ns - item.received_ns) // 1000 - item.decode_us)
            m.latency.labels(stage="queue").observe(queue_us / 1e6)
            m.latency.labels(stage="total").observe((end_ns - item.received_ns) / 1e9)
        for item, parts, _ in replies:
            self._post(item.identity, parts)

    def _post_failure(
        self,
        model: TailModel,
        items: Sequence[InferenceRequest],
        code: protocol.ErrorCode,
        text: str,
    ) -> None:
        """A typed ERROR for each item the backend could not answer (any thread)."""
        self.log.warning("backend_failed", model_id=model.model_id, code=code.name, error=text)
        for item in items:
            self.metrics.errors.labels(code=code.name).inc()
            err = protocol.ErrorMsg(
                code=code, message=text[:1000], seq=item.seq, session_id=item.session_id
            )
            self._post(item.identity, protocol.encode_message(err))

    def _reply_parts(
        self,
        model: TailModel,
        item: InferenceRequest,
        outcome: tuple[np.ndarray, np.ndarray] | ItemFailure,
        start_ns: int,
        compute_us: int,
        load: protocol.ServerLoad,
    ) -> list[bytes]:
        """The REPLY for one frame, or its own ERROR; never raises (one bad reply, one ERROR)."""
        if not isinstance(outcome, ItemFailure):
            ids, scores = outcome
            top_ids = tuple(int(v) for v in ids)
            try:
                return protocol.encode_message(
                    protocol.Reply(
                        session_id=item.session_id,
                        seq=item.seq,
                        top_ids=top_ids,
                        top_scores=tuple(float(v) for v in scores),
                        labels=tuple(model.label(c) for c in top_ids),
                        decode_us=item.decode_us,
                        queue_us=max(0, (start_ns - item.received_ns) // 1000 - item.decode_us),
                        compute_us=compute_us,
                        load=load,
                    )
                )
            except Exception as exc:
                outcome = ItemFailure("raised", f"reply not encodable: {type(exc).__name__}")
        if outcome.kind == "invalid":
            code = protocol.ErrorCode.BAD_TENSOR
            message = f"the tail cannot compute this frame: {outcome.reason}"
        else:
            code = protocol.ErrorCode.INTERNAL
            message = f"the tail failed on this frame alone: {outcome.reason}"
        self.metrics.errors.labels(code=code.name).inc()
        err = protocol.ErrorMsg(
            code=code, message=message[:1000], seq=item.seq, session_id=item.session_id
        )
        return protocol.encode_message(err)

    def _batch_failed(
        self, model: TailModel, items: list[InferenceRequest], exc: BaseException
    ) -> None:
        self.log.error(
            "batch_failed", model_id=model.model_id, size=len(items), error=repr(exc)[:300]
        )
        text = f"tail failed on this batch: {exc.__class__.__name__}"
        self._post_failure(model, items, protocol.ErrorCode.INTERNAL, text)

    # ================================================================== load + housekeeping

    def _load(self, model: TailModel | None) -> protocol.ServerLoad:
        """Server-wide queue depth and utilization; compute time of the asked-about model."""
        depth = sum(b.queue_depth for b in self.batchers.values())
        utilization = min(1.0, sum(b.utilization() for b in self.batchers.values()))
        if model is not None:
            compute_ms = self.batchers[model.model_id].compute_ms_per_item
        else:
            compute_ms = max((b.compute_ms_per_item for b in self.batchers.values()), default=0.0)
        return protocol.ServerLoad(
            queue_depth=depth, utilization=round(utilization, 4), compute_ms=round(compute_ms, 4)
        )

    def _housekeeping(self) -> None:
        for session in self.sessions.expire():
            self.log.info(
                "session_expired", session_id=session.session_id, device=session.device_name
            )
        self.metrics.sessions.set(len(self.sessions))
        for model_id, batcher in self.batchers.items():
            self.metrics.queue_depth.labels(model=model_id).set(batcher.queue_depth)
            self.metrics.utilization.labels(model=model_id).set(batcher.utilization())

    def _drain_monitor(self, monitor: zmq.Socket) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            reason = _HANDSHAKE_FAILURES.get(event["event"])
            if reason is None:
                continue
            self.metrics.auth_failures.labels(reason=reason).inc()
            self.log.warning(
                "auth_handshake_failed",
                reason=reason,
                endpoint=event.get("endpoint", b"").decode(errors="replace")
                if isinstance(event.get("endpoint"), bytes)
                else str(event.get("endpoint")),
                detail=int(event.get("value", 0)),
            )

    def _on_auth_reject(self, client_key: str) -> None:
        """Called on the auth thread when a CURVE client key is not on the allowlist."""
        self.log.warning("auth_rejected", client_public_key=client_key)
