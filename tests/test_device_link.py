"""The link thread in-process against the real ROUTER peer: window, expiry, late replies.

HELLO retries and outages run the real thread and sockets on a stepped clock
(``fake_clock`` from conftest), so the reconnect bound is checked exactly, not timed.
"""

from __future__ import annotations

import time

import pytest
from support.device_side import start_peer

from device.config import ServerSection
from device.link import Link
from device.metrics import Counters, FrameRecord
from wire.protocol import Hello

HELLO = Hello("test-model", (2, 4, 4), "int8", 0.05, -128, 8, "raw", {}, "test-board")


def _frame(seq: int) -> FrameRecord:
    return FrameRecord(seq=seq, head="h", capture_ts=time.time(), capture_mono=time.monotonic())


@pytest.fixture
def slow_peer(free_port):
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


def test_expired_frames_are_lost_and_their_late_replies_counted(slow_peer, wait_until):
    link, counters = _link(slow_peer, window=2, reply_timeout_s=0.05)
    try:
        link.submit(_frame(7), bytes(32))
        assert link.wait_idle(2.0)
        rec = link.done.get(timeout=1)
        assert rec.seq == 7 and rec.status == "lost"
        wait_until(lambda: counters.late_replies > 0, 3.0, what="the late reply")
        assert counters.late_replies == 1 and counters.unknown_replies == 0
        assert counters.lost == 1 and counters.replied == 0
        assert link.is_alive()
    finally:
        link.stop()
        link.join(5)


# The daemon tests' settings (tests/support/device_side.write_config).
RETRY = {"hello_timeout_s": 0.3, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5}


def test_hello_retries_are_bounded_so_a_returning_server_is_found_within_2s(
    free_port, fake_clock, wait_until
):
    """Nothing listens: HELLO is retried at hello_timeout + backoff(attempt), never more apart
    than hello_timeout + reconnect_max (0.8 s here, well inside the 2 s a restarted server
    may wait), and a server that comes back is in session by the next retry at the latest."""
    port = free_port()
    counters = Counters()
    cfg = ServerSection(endpoints=(f"tcp://127.0.0.1:{port}",), **RETRY)
    bound = cfg.hello_timeout_s + cfg.reconnect_max_s
    link = Link(cfg, HELLO, counters, clock=fake_clock)
    t = fake_clock()  # the first HELLO goes out at this time
    link.start()
    fake_clock.wait_reads(2)  # the first session (its HELLO deadline) is set up
    peer = None
    try:
        gaps = []
        for attempt in range(7):
            due = t + cfg.hello_timeout_s + cfg.reconnect.delay(attempt)
            fake_clock.set(due - 1e-4)
            fake_clock.wait_reads(3)  # the link thread has looked at this time...
            assert counters.reconnects == attempt  # ...and not given up on the HELLO yet
            fake_clock.set(due)
            wait_until(lambda n=attempt: counters.reconnects == n + 1, what="a HELLO retry")
            gaps.append(due - t)
            t = due
        assert gaps[-1] == pytest.approx(bound)  # the backoff has reached its cap
        assert max(gaps) <= bound + 1e-9 and bound < 2.0
        assert not link.ready and link.is_alive()

        peer = start_peer(f"tcp://127.0.0.1:{port}")
        up = fake_clock()
        # ZeroMQ may deliver the HELLO already queued; otherwise the next retry, due within
        # ``bound`` of the server's return, opens the session.
        if not link.wait_ready(1.0):
            fake_clock.set(t + cfg.hello_timeout_s + cfg.reconnect.delay(7))
        assert link.wait_ready(10.0), "no session after the server came back"
        assert fake_clock() - up <= bound
        assert link.sessions == 1
    finally:
        link.stop()
        link.join(5)
        if peer is not None:
            peer.kill()


@pytest.mark.parametrize("outage", ["drop", "buffer"])
def test_an_outage_holds_at_most_outage_buffer_frames(free_port, fake_clock, wait_until, outage):
    """Frames captured while no server answers are dropped (or kept up to ``outage_buffer``),
    never queued without bound: the mechanism that keeps the daemon's memory flat in an
    outage (its RSS over time is benchmarks/daemon.py's job)."""
    counters = Counters()
    cfg = ServerSection(
        endpoints=(f"tcp://127.0.0.1:{free_port()}",), outage=outage, outage_buffer=4, **RETRY
    )
    link = Link(cfg, HELLO, counters, clock=fake_clock)  # the clock stands still: no retries
    link.start()
    try:
        n = 200
        for seq in range(1, n + 1):
            assert link.wait_slot(5.0)  # never blocks: an offline link frees slots at once
            link.submit(_frame(seq), bytes(1024))
            assert link.buffered <= cfg.outage_buffer
        kept = cfg.outage_buffer if outage == "buffer" else 0
        wait_until(lambda: link.done.qsize() == n - kept, what="every frame handed back")
        done = [link.done.get_nowait() for _ in range(n - kept)]
        assert {r.status for r in done} == {"dropped"}
        assert link.buffered == kept and link.inflight == 0
        if outage == "buffer":  # the newest frames are the ones kept
            assert sorted(r.seq for r in done) == list(range(1, n - kept + 1))
            assert counters.dropped_buffer == n - kept
        else:
            assert counters.dropped_outage == n
        assert counters.sent == 0
    finally:
        link.stop()
        link.join(5)
