"""Device sessions, one per ZeroMQ identity.

Why per identity: a FRAME carries only a session id, so the server must remember what the
HELLO negotiated (model, shape, quantization, codec, payload limit). Binding the session to
the ROUTER identity means one device cannot inject frames into another's session by
guessing its id. The table is bounded (least recently used sessions are evicted) and idle
sessions expire, so a flood of HELLOs cannot grow memory without limit.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Session:
    session_id: int
    identity: bytes
    model_id: str
    codec: Any  # wire.codecs.FeatureCodec negotiated by HELLO
    max_payload: int
    device_name: str
    created: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    frames: int = 0
    # Codec objects are not all thread-safe (a zstd decompressor context is not), and one
    # device's frames may be decoded on two pool threads at once.
    decode_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class SessionTable:
    """identity -> Session, LRU-bounded, with idle expiry. Used by the IO thread only."""

    def __init__(self, max_sessions: int, idle_s: float) -> None:
        self.max_sessions = max_sessions
        self.idle_s = idle_s
        self._by_identity: OrderedDict[bytes, Session] = OrderedDict()

    def open(self, identity: bytes, **fields: Any) -> tuple[Session, Session | None]:
        """Create (or replace) the identity's session; returns (new, evicted-or-None)."""
        evicted = None
        self._by_identity.pop(identity, None)
        if len(self._by_identity) >= self.max_sessions:
            _, evicted = self._by_identity.popitem(last=False)
        session = Session(session_id=self._new_id(), identity=identity, **fields)
        self._by_identity[identity] = session
        return session, evicted

    def lookup(self, identity: bytes, session_id: int) -> Session | None:
        """The identity's session if the id matches; refreshes its LRU position."""
        session = self._by_identity.get(identity)
        if session is None or session.session_id != session_id:
            return None
        session.last_seen = time.monotonic()
        self._by_identity.move_to_end(identity)
        return session

    def expire(self, now: float | None = None) -> list[Session]:
        now = time.monotonic() if now is None else now
        stale = [s for s in self._by_identity.values() if now - s.last_seen > self.idle_s]
        for session in stale:
            del self._by_identity[session.identity]
        return stale

    def __len__(self) -> int:
        return len(self._by_identity)

    def _new_id(self) -> int:
        # Random, non-zero, 31-bit: never 0 (0 means "no session" in ERROR replies) and
        # not guessable from a neighbour's id.
        used = {s.session_id for s in self._by_identity.values()}
        while True:
            candidate = secrets.randbelow((1 << 31) - 1) + 1
            if candidate not in used:
                return candidate
