"""The link thread in-process against the real ROUTER peer: window, expiry, late replies."""

from __future__ import annotations

import time

import pytest
from test_device_support import free_port, start_peer

from device.config import ServerSection
from device.link import Link
from device.metrics import Counters, FrameRecord
from wire.protocol import Hello

HELLO = Hello("test-model", (2, 4, 4), "int8", 0.05, -128, 8, "raw", {}, "test-board")


def _frame(seq: int) -> FrameRecord:
    return FrameRecord(seq=seq, head="h", capture_ts=time.time(), capture_mono=time.monotonic())


@pytest.fixture
def slow_peer():
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}", "--delay-ms", "150")
    yield port
    peer.kill()


def _link(port: int, **kw) -> tuple[Link, Counters]:
    counters = Counters()
    cfg = ServerSection(endpoints=(f"tcp://127.0.0.1:{port}",), **kw)
    link = Link(cfg, HELLO, counters)
    link.start()
    assert link.wait_ready(10)
    return link, counters


def test_window_is_enforced_at_submit_time(slow_peer):
    link, counters = _link(slow_peer, window=3)
    try:
        payload = bytes(32)
        for seq in (1, 2, 3):
            assert link.wait_slot(0.0)
            link.submit(_frame(seq), payload)
        # Three frames handed over: no slot, even before the link thread has sent them.
        assert not link.wait_slot(0.0)
        assert link.wait_slot(5.0)  # a reply frees one
        assert link.wait_idle(5.0)
        done = [link.done.get_nowait() for _ in range(3)]
        assert sorted(r.seq for r in done) == [1, 2, 3]
        assert all(r.status == "ok" and r.rtt_ms >= 100 for r in done)
        assert counters.dropped_send == 0
    finally:
        link.stop()
        link.join(5)


def test_expired_frames_are_lost_and_their_late_replies_counted(slow_peer):
    link, counters = _link(slow_peer, window=2, reply_timeout_s=0.05)
    try:
        link.submit(_frame(7), bytes(32))
        assert link.wait_idle(2.0)
        rec = link.done.get(timeout=1)
        assert rec.seq == 7 and rec.status == "lost"
        deadline = time.monotonic() + 3
        while counters.late_replies == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert counters.late_replies == 1 and counters.unknown_replies == 0
        assert counters.lost == 1 and counters.replied == 0
        assert link.is_alive()
    finally:
        link.stop()
        link.join(5)
