"""The ZeroMQ DEALER link to the tail server: session, heartbeats, reconnects, replies.

Why a thread of its own: replies must be timestamped when they arrive, not when the main
loop finishes its next head inference, or every RTT would carry up to one head time of error.
This thread is the only user of the DEALER socket (ZeroMQ sockets are not thread-safe); the
main loop hands it frames through a queue plus an inproc wake-up socket.

Session life: a fresh DEALER per attempt sends HELLO and keeps it queued until a WELCOME
arrives (so a server that comes back is picked up as soon as ZeroMQ's TCP reconnect fires,
~100 ms), retrying with exponential backoff on a new socket and the next endpoint. A session
is declared lost on missed pongs or an UNKNOWN_SESSION error for the current session (the
server restarted); frames then in flight are counted lost and a new HELLO goes out.

Memory is bounded everywhere: at most ``window`` frames in flight (the main loop waits for
a slot), the outage buffer is a ``deque(maxlen=...)``, and the socket's send HWM is small.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import zmq

from device.config import ServerSection
from device.metrics import Counters, FrameRecord
from wire import protocol
from wire.errors import ProtocolError
from wire.logjson import get_logger

_wake_ids = itertools.count()


class LinkState(str, Enum):
    """Link states; a ``str`` so logs and metrics carry the value (``enum.StrEnum`` is 3.11+)."""

    OFFLINE = "offline"  # no session; HELLO outstanding
    READY = "ready"  # WELCOME received, frames flow
    STOPPED = "stopped"

    def __str__(self) -> str:  # what StrEnum gives: "ready", not "LinkState.READY"
        return self.value


@dataclass
class Outgoing:
    record: FrameRecord
    payload: bytes


class Link(threading.Thread):
    """Owns the DEALER socket; completed or lost frames come out of :attr:`done`."""

    def __init__(
        self,
        cfg: ServerSection,
        hello: protocol.Hello,
        counters: Counters,
        *,
        context: zmq.Context | None = None,
        on_load: Callable[[str, protocol.ServerLoad], None] | None = None,
        busy: Callable[[], contextlib.AbstractContextManager] | None = None,
        clock: Callable[[], float] = time.monotonic,
        radio: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(name="splitfit-link", daemon=True)
        # Injectable so HELLO retries, heartbeats and reply timeouts are tested by stepping
        # time (the poll loop still wakes at least every 100 ms of real time to look).
        self._clock = clock
        self.cfg = cfg
        self.counters = counters
        self.log = get_logger(__name__)
        self.on_load = on_load
        self._busy = busy or contextlib.nullcontext
        self._radio = radio  # told the size of every frame that went onto the link
        self.ctx = context or zmq.Context.instance()
        self.done: queue.SimpleQueue[FrameRecord] = queue.SimpleQueue()
        self.state = LinkState.OFFLINE
        self.session_id = 0
        self.server_load = protocol.ServerLoad()
        self.sessions = 0  # WELCOMEs received over the run
        self.last_welcome_mono = 0.0
        self.last_lost_mono = 0.0
        self._hello = hello
        self._pending_hello: protocol.Hello | None = None
        self._lock = threading.Condition()
        self._inflight: dict[int, FrameRecord] = {}
        # Frames handed to submit() and not finished yet, outage buffer excepted. The window
        # is enforced on this count (the main thread's view), not on _inflight, which the
        # link thread fills a moment later — otherwise a burst could overrun the window.
        self._outstanding = 0
        self._lost_seqs: deque[int] = deque(maxlen=4096)  # to tell late from unknown replies
        self._max_seq_sent = -1
        self._outbox: queue.SimpleQueue[Outgoing | str] = queue.SimpleQueue()
        self._buffer: deque[Outgoing] = deque()
        self._stop_evt = threading.Event()
        self._wake_addr = f"inproc://splitfit-link-wake-{next(_wake_ids)}"
        self._wake_rx = self.ctx.socket(zmq.PAIR)
        self._wake_rx.bind(self._wake_addr)
        self._wake_tx = self.ctx.socket(zmq.PAIR)
        self._wake_tx.connect(self._wake_addr)
        self._wake_tx_lock = threading.Lock()
        self._sock: zmq.Socket | None = None
        self._endpoint_idx = -1
        self._attempt = 0
        self._backoff = cfg.reconnect  # HELLO retries: the board's one backoff policy
        self._hello_deadline = 0.0
        self._last_heard = 0.0
        self._next_ping = 0.0
        self._ping_seq = 0
        self.cpu_s = 0.0  # this thread's CPU time, set when it ends (benchmarks)

    # ------------------------------------------------------------------ main-thread API

    @property
    def ready(self) -> bool:
        return self.state is LinkState.READY

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def wait_slot(self, timeout: float) -> bool:
        """Block until fewer than ``window`` frames are in flight (or timeout)."""
        with self._lock:
            return self._lock.wait_for(
                lambda: self._outstanding < self.cfg.window or self._stop_evt.is_set(), timeout
            )

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is in flight (drain on shutdown / before a split switch)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._outstanding == 0, timeout)

    def wait_ready(self, timeout: float) -> bool:
        """Block until a session is open (or the link stops, or ``timeout`` real seconds)."""
        with self._lock:
            self._lock.wait_for(lambda: self.ready or self._stop_evt.is_set(), timeout)
        return self.ready

    def submit(self, record: FrameRecord, payload: bytes) -> None:
        """Queue one encoded frame for sending (the link decides: send, buffer or drop)."""
        with self._lock:
            self._outstanding += 1
        self._outbox.put(Outgoing(record, payload))
        self._wake()

    def switch_session(self, hello: protocol.Hello) -> None:
        """Open a new session with another head's HELLO (partition switch)."""
        self._pending_hello = hello
        self._outbox.put("switch")
        self._wake()

    def stop(self) -> None:
        self._stop_evt.set()
        self._wake()
        with self._lock:
            self._lock.notify_all()

    def _wake(self) -> None:
        with self._wake_tx_lock, contextlib.suppress(zmq.ZMQError):
            self._wake_tx.send(b"", zmq.NOBLOCK)

    # ------------------------------------------------------------------ link thread

    def run(self) -> None:
        try:
            self._new_session(initial=True)
            poller, polled = zmq.Poller(), None
            while not self._stop_evt.is_set():
                if polled is not self._sock:  # the socket is replaced on every new session
                    poller = zmq.Poller()
                    poller.register(self._wake_rx, zmq.POLLIN)
                    poller.register(self._sock, zmq.POLLIN)
                    polled = self._sock
                timeout_ms = max(1, int(self._next_deadline_in() * 1000))
                events = dict(poller.poll(timeout_ms))
                if self._wake_rx in events:
                    self._drain_wake()
                    self._drain_outbox()
                if self._sock in events:
                    self._drain_socket()
                self._tick(self._clock())
        except Exception as exc:  # never die silently: the main loop checks is_alive()
            self.log.error("link_crashed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.cpu_s = time.thread_time()
            self.state = LinkState.STOPPED
            self._close_socket()
            self._wake_rx.close(linger=0)
            with self._wake_tx_lock:
                self._wake_tx.close(linger=0)
            with self._lock:
                self._lock.notify_all()

    def _next_deadline_in(self) -> float:
        now = self._clock()
        if self.state is LinkState.READY:
            nxt = min(self._next_ping, self._last_heard + self._liveness_s())
        else:
            nxt = self._hello_deadline
        # Also wake regularly to expire frames that never got a reply.
        return min(max(nxt - now, 0.001), 0.1)

    def _liveness_s(self) -> float:
        return self.cfg.heartbeat_s * self.cfg.heartbeat_misses

    def _drain_wake(self) -> None:
        # Checking ZMQ_EVENTS is cheaper than letting recv raise zmq.Again at the end.
        while self._wake_rx.get(zmq.EVENTS) & zmq.POLLIN:
            self._wake_rx.recv(zmq.NOBLOCK)

    def _drain_outbox(self) -> None:
        while True:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return
            if item == "switch":
                self._new_session(initial=False, reason="switch")
                continue
            assert isinstance(item, Outgoing)
            if self.state is LinkState.READY:
                self._send_frame(item)
            elif self.cfg.outage == "buffer":
                if len(self._buffer) >= self.cfg.outage_buffer:
                    old = self._buffer.popleft()
                    self.counters.dropped_buffer += 1
                    self._finish(old.record, "dropped", counted=False)
                self._buffer.append(item)
                self._release()  # a buffered frame does not hold a window slot
            else:
                self.counters.dropped_outage += 1
                self._finish(item.record, "dropped")

    def _send_frame(self, item: Outgoing) -> None:
        assert self._sock is not None
        rec = item.record
        msg = protocol.Frame(
            session_id=self.session_id,
            seq=rec.seq,
            capture_ts_us=int(rec.capture_ts * 1e6),
            payload=item.payload,
        )
        rec.sent_mono = self._clock()
        with self._lock:
            self._inflight[rec.seq] = rec
        try:
            with self._busy():  # the radio is part of the board's energy bill
                self._sock.send_multipart(protocol.encode_message(msg), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            with self._lock:
                self._inflight.pop(rec.seq, None)
                self._lock.notify_all()
            self.counters.dropped_send += 1
            self._finish(rec, "dropped")
            return
        if self._radio is not None:
            self._radio(len(item.payload))
        self._max_seq_sent = max(self._max_seq_sent, rec.seq)
        self.counters.sent += 1

    def _drain_socket(self) -> None:
        assert self._sock is not None
        for _ in range(256):  # bounded so the wake socket is serviced too
            if not self._sock.get(zmq.EVENTS) & zmq.POLLIN:
                return
            parts = self._sock.recv_multipart(zmq.NOBLOCK)
            now = self._clock()
            try:
                msg = protocol.decode_message(parts, max_payload=self.cfg.max_payload)
            except ProtocolError as exc:
                self.counters.malformed += 1
                self.log.warning("malformed_message", error=f"{type(exc).__name__}: {exc}")
                continue
            self._last_heard = now
            self._handle(msg, now)

    def _handle(self, msg: object, now: float) -> None:
        if isinstance(msg, protocol.Reply):
            self._on_reply(msg, now)
        elif isinstance(msg, protocol.Pong):
            self._set_load(msg.load)
        elif isinstance(msg, protocol.Welcome):
            if self.state is LinkState.READY:
                self.counters.unknown_replies += 1  # duplicate WELCOME from an old attempt
                return
            self.session_id = msg.session_id
            with self._lock:
                self.state = LinkState.READY
                self._lock.notify_all()  # wake wait_ready()
            self.sessions += 1
            self.last_welcome_mono = now
            self._attempt = 0
            self._next_ping = now + self.cfg.heartbeat_s
            self._set_load(msg.load)
            self.log.info(
                "session_open",
                session_id=msg.session_id,
                endpoint=self.cfg.endpoints[self._endpoint_idx],
                model_id=self._hello.model_id,
                sessions=self.sessions,
            )
            while self._buffer and self.state is LinkState.READY:
                with self._lock:
                    self._outstanding += 1
                self._send_frame(self._buffer.popleft())
        elif isinstance(msg, protocol.ErrorMsg):
            self._on_error(msg)
        else:
            self.counters.unknown_replies += 1  # a FRAME/HELLO/PING sent to a device

    def _on_reply(self, msg: protocol.Reply, now: float) -> None:
        with self._lock:
            rec = self._inflight.pop(msg.seq, None)
            self._lock.notify_all()
        if rec is None:
            if msg.seq in self._lost_seqs:
                self.counters.late_replies += 1
            else:
                self.counters.unknown_replies += 1
            return
        rec.reply_mono = now
        rec.rtt_ms = (now - rec.sent_mono) * 1e3
        rec.latency_ms = (now - rec.capture_mono) * 1e3
        rec.server_decode_ms = msg.decode_us / 1e3
        rec.server_queue_ms = msg.queue_us / 1e3
        rec.server_compute_ms = msg.compute_us / 1e3
        rec.server_load = {
            "queue_depth": msg.load.queue_depth,
            "utilization": msg.load.utilization,
            "compute_ms": msg.load.compute_ms,
        }
        if msg.top_ids:
            rec.top1 = int(msg.top_ids[0])
            rec.top1_score = float(msg.top_scores[0]) if msg.top_scores else None
        if msg.labels:
            rec.top1_label = msg.labels[0]
        self._set_load(msg.load)
        self.counters.replied += 1
        self._finish(rec, "ok")

    def _on_error(self, msg: protocol.ErrorMsg) -> None:
        self.counters.server_errors += 1
        self.log.warning(
            "server_error",
            code=protocol.ErrorCode(msg.code).name,
            message=msg.message,
            seq=msg.seq,
            session_id=msg.session_id,
        )
        if msg.seq:
            with self._lock:
                rec = self._inflight.pop(msg.seq, None)
                self._lock.notify_all()
            if rec is not None:
                self._lost_seqs.append(rec.seq)
                self.counters.lost += 1
                self._finish(rec, "error")
        # A refused HELLO (unknown model, codec...) simply times out and is retried with
        # backoff; an UNKNOWN_SESSION for the current session means the server restarted.
        if (
            msg.code == protocol.ErrorCode.UNKNOWN_SESSION
            and msg.session_id in (0, self.session_id)
            and self.state is LinkState.READY
        ):
            self._new_session(initial=False, reason="unknown_session")

    def _set_load(self, load: protocol.ServerLoad) -> None:
        self.server_load = load
        if self.on_load is not None:
            self.on_load(self._hello.model_id, load)

    def _tick(self, now: float) -> None:
        if self.state is LinkState.READY:
            if now - self._last_heard > self._liveness_s():
                self._new_session(initial=False, reason="missed_pongs")
            elif now >= self._next_ping:
                self._ping_seq = (self._ping_seq + 1) & 0xFFFFFFFF
                ping = protocol.Ping(self.session_id, self._ping_seq, int(time.time() * 1e6))
                with contextlib.suppress(zmq.Again):
                    self._sock.send_multipart(protocol.encode_message(ping), zmq.NOBLOCK)
                self._next_ping = now + self.cfg.heartbeat_s
        elif now >= self._hello_deadline:
            self._attempt += 1
            self._new_session(initial=False, reason="hello_timeout")
        self._expire(now)

    def _expire(self, now: float) -> None:
        limit = self.cfg.reply_timeout_s
        with self._lock:
            old = [r for r in self._inflight.values() if now - r.sent_mono > limit]
            for r in old:
                del self._inflight[r.seq]
            if old:
                self._lock.notify_all()
        for r in old:
            self._lost_seqs.append(r.seq)
            self.counters.lost += 1
            self._finish(r, "lost")

    def _new_session(self, *, initial: bool, reason: str = "start") -> None:
        """Fresh socket, next endpoint, HELLO queued; everything in flight is lost."""
        # One instant for the whole reset, read before anything is counted: the next HELLO
        # is due hello_timeout + backoff after this retry, however long the socket set-up
        # takes, and a stepped test clock cannot move between the count and the deadline.
        now = self._clock()
        was_ready = self.state is LinkState.READY
        if self._pending_hello is not None:
            self._hello = self._pending_hello
            self._pending_hello = None
        if was_ready:
            self.last_lost_mono = now
        if not initial:
            self.counters.reconnects += reason != "switch"
            self.log.info(
                "session_reset", reason=reason, attempt=self._attempt, was_ready=was_ready
            )
        # Not ready before the lost frames free their window slots: a main loop woken by a
        # freed slot must see the outage (and, say, answer locally), not send into it.
        self.state = LinkState.OFFLINE
        if reason != "switch":
            with self._lock:
                lost = list(self._inflight.values())
                self._inflight.clear()
                self._lock.notify_all()
            for r in lost:
                self._lost_seqs.append(r.seq)
                self.counters.lost += 1
                self._finish(r, "lost")
        self.state = LinkState.OFFLINE
        self.session_id = 0
        if reason != "switch" or self._sock is None:
            self._close_socket()
            self._endpoint_idx = (self._endpoint_idx + 1) % len(self.cfg.endpoints)
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, max(16, 2 * (self.cfg.window + self.cfg.outage_buffer)))
            sock.setsockopt(zmq.RCVHWM, 1000)
            sock.setsockopt(zmq.RECONNECT_IVL, 50)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 250)
            sock.connect(self.cfg.endpoints[self._endpoint_idx])
            self._sock = sock
        with contextlib.suppress(zmq.Again):
            self._sock.send_multipart(protocol.encode_message(self._hello), zmq.NOBLOCK)
        backoff = self._backoff.delay(self._attempt)
        self._hello_deadline = now + self.cfg.hello_timeout_s + backoff
        self._last_heard = now

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def _release(self) -> None:
        with self._lock:
            self._outstanding -= 1
            self._lock.notify_all()

    def _finish(self, rec: FrameRecord, status: str, *, counted: bool = True) -> None:
        """Hand a frame back to the main loop; ``counted``: it still held a window slot."""
        rec.status = status
        if counted:
            self._release()
        self.done.put(rec)
