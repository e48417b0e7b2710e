"""The server's parts on their own: dynamic batcher, registry checks, sessions, JSON log."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from support.server_side import CHW, make_tail

from server.batcher import DynamicBatcher
from server.registry import ModelRegistry, RegistryError, load_tail
from server.sessions import SessionTable

CPU = torch.device("cpu")


class Recorder:
    """A process function that records batch sizes and can be made "slow" or failing.

    ``clock``: a FakeClock to advance by ``delay_s`` per item instead of sleeping, so the
    batcher's compute-time and utilization figures are exact; ``at`` records the clock
    reading when each batch started.
    """

    def __init__(self, delay_s: float = 0.0, fail_on: int | None = None, clock=None) -> None:
        self.batches: list[list[int]] = []
        self.at: list[float] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.clock = clock
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None  # set by a test to hold the compute thread

    def __call__(self, items: list[int]) -> None:
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        if self.clock is not None:
            self.at.append(self.clock())
            self.clock.advance(self.delay_s * len(items))
        with self.lock:
            self.batches.append(list(items))
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError("boom")

    def total(self) -> int:
        with self.lock:
            return sum(len(b) for b in self.batches)


@contextlib.contextmanager
def _running(process: Recorder, **settings) -> Iterator[DynamicBatcher]:
    """A started batcher on ``process``, stopped however the test ends (a failed assertion
    must not leave its compute thread waiting on a gate)."""
    batcher = DynamicBatcher("t", process, **settings).start()
    try:
        yield batcher
    finally:
        batcher.stop()


def _submit(batcher: DynamicBatcher, items) -> None:
    for item in items:
        assert batcher.reserve()
        batcher.submit(item)


def test_full_batch_is_dispatched_without_waiting_for_the_delay(fake_clock, wait_until) -> None:
    rec = Recorder(clock=fake_clock)
    with _running(rec, max_batch=4, max_wait_us=5_000_000, max_queue=100, clock=fake_clock) as b:
        t0 = fake_clock()
        _submit(b, range(4))
        wait_until(lambda: rec.total() == 4)
        # The clock never moved: a full batch did not wait for any part of the 5 s delay.
        assert rec.at == [t0]
        assert rec.batches == [[0, 1, 2, 3]]


def test_partial_batch_goes_when_the_oldest_request_has_waited_max_wait(
    fake_clock, wait_until
) -> None:
    rec = Recorder(clock=fake_clock)
    with _running(rec, max_batch=64, max_wait_us=100_000, max_queue=100, clock=fake_clock) as b:
        t0 = fake_clock()
        _submit(b, [1])
        fake_clock.advance(0.05)
        _submit(b, [2, 3])
        # Just before the first request's deadline: the compute thread looks, and waits on.
        fake_clock.set(t0 + 0.0999)
        fake_clock.wait_reads(3)
        assert rec.batches == []
        # The deadline counts from the *first* request (t0 + 0.1), not the last (t0 + 0.15).
        fake_clock.set(t0 + 0.1)
        wait_until(lambda: rec.total() == 3)
        assert rec.batches == [[1, 2, 3]]
        assert rec.at == [pytest.approx(t0 + 0.1)]


def test_queue_larger_than_max_batch_is_split_in_order(wait_until) -> None:
    rec = Recorder()
    rec.gate = threading.Event()
    with _running(rec, max_batch=3, max_wait_us=0, max_queue=100) as b:
        _submit(b, [0])  # taken by the compute thread, which then blocks on the gate
        wait_until(lambda: b.queue_depth == 0)
        _submit(b, range(1, 8))
        rec.gate.set()
        wait_until(lambda: rec.total() == 8)
        assert [x for batch in rec.batches for x in batch] == list(range(8))
        assert max(len(batch) for batch in rec.batches) == 3
        assert rec.batches[1] == [1, 2, 3]  # queued while busy -> a full batch next


def test_max_batch_one_disables_batching(wait_until) -> None:
    rec = Recorder()
    rec.gate = threading.Event()
    with _running(rec, max_batch=1, max_wait_us=100_000, max_queue=100) as b:
        _submit(b, range(6))  # all queued before the first batch may finish
        rec.gate.set()
        wait_until(lambda: rec.total() == 6)
        assert rec.batches == [[i] for i in range(6)]


def test_reserve_refuses_beyond_max_queue_and_release_frees_a_slot() -> None:
    b = DynamicBatcher("t", Recorder(), max_batch=4, max_wait_us=0, max_queue=2)
    assert b.reserve() and b.reserve()
    assert not b.reserve()
    assert b.queue_depth == 2
    b.release()
    assert b.reserve()


def test_stop_finishes_everything_already_queued(fake_clock) -> None:
    rec = Recorder(clock=fake_clock)
    b = DynamicBatcher(
        "t", rec, max_batch=100, max_wait_us=10_000_000, max_queue=100, clock=fake_clock
    ).start()
    _submit(b, range(5))
    t0 = fake_clock()
    b.stop()  # the clock is frozen: only stop() itself can end the 10 s wait
    assert rec.total() == 5 and rec.at == [t0]
    assert not b.reserve()  # a stopping batcher admits nothing new


def test_a_failing_batch_is_reported_and_the_thread_carries_on(wait_until) -> None:
    rec = Recorder(fail_on=1)
    failures: list[tuple[list[int], str]] = []
    with _running(
        rec,
        max_batch=1,
        max_wait_us=0,
        max_queue=100,
        on_error=lambda items, exc: failures.append((items, str(exc))),
    ) as b:
        _submit(b, [0, 1, 2])
        wait_until(lambda: rec.total() == 3)
        wait_until(lambda: b.queue_depth == 0)
        assert failures == [([1], "boom")]


def test_load_figures_follow_the_work(fake_clock, wait_until) -> None:
    rec = Recorder(delay_s=0.02, clock=fake_clock)  # each item "computes" for 20 ms
    with _running(
        rec, max_batch=1, max_wait_us=0, max_queue=100, utilization_window_s=0.5, clock=fake_clock
    ) as b:
        assert b.utilization() == 0.0 and b.compute_ms_per_item == 0.0
        _submit(b, range(10))
        wait_until(lambda: rec.total() == 10)
        wait_until(lambda: b.queue_depth == 0)
        # 10 x 20 ms back to back: 200 ms busy of the last 500 ms.
        assert b.utilization() == pytest.approx(0.4)
        assert b.compute_ms_per_item == pytest.approx(20.0)
        fake_clock.advance(0.4)  # the window now holds the last 100 ms of work only
        assert b.utilization() == pytest.approx(0.2)
        fake_clock.advance(0.2)
        assert b.utilization() == 0.0  # the window slid past the work


def test_thread_init_runs_on_the_compute_thread() -> None:
    seen: list[str] = []
    b = DynamicBatcher(
        "t",
        Recorder(),
        max_batch=1,
        max_wait_us=0,
        max_queue=1,
        thread_init=lambda: seen.append(threading.current_thread().name),
    ).start()
    b.stop()
    assert seen == ["batcher-t"]


# ----------------------------------------------------------------------------- registry


def test_registry_loads_a_tail_and_runs_topk(tmp_path: Path) -> None:
    directory, module = make_tail(tmp_path / "m", "m")
    tail = load_tail(directory / "tail.pt", directory / "tail.json", CPU)
    assert tail.model_id == "m" and tail.input_chw == CHW and tail.num_classes == 5
    x = np.random.default_rng(0).normal(size=(3, *CHW)).astype(np.float32)
    ids, scores = tail.topk(x, 2)
    with torch.no_grad():
        want = torch.softmax(module(torch.from_numpy(x)), 1).topk(2)
    assert ids.tolist() == want.indices.tolist()
    assert np.allclose(scores, want.values.numpy(), atol=1e-6)
    assert tail.label(int(ids[0, 0])).startswith("class-")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"num_classes": 9, "labels": []}, "num_classes = 9"),
        ({"input_chw": [3, 6, 6]}, "does not accept the manifest's input"),
        ({"extra": {"tail_sha256": "0" * 64}}, "sha256 differs"),
    ],
)
def test_registry_refuses_a_tail_whose_manifest_disagrees(
    tmp_path: Path, overrides, fragment
) -> None:
    directory, _ = make_tail(tmp_path / "m", "m", manifest_overrides=overrides)
    with pytest.raises(RegistryError, match=fragment):
        load_tail(directory / "tail.pt", directory / "tail.json", CPU)


def test_registry_accepts_a_matching_recorded_hash(tmp_path: Path) -> None:
    from wire.manifest import sha256_file

    directory, _ = make_tail(tmp_path / "m", "m")
    digest = sha256_file(directory / "tail.pt")
    make_tail(tmp_path / "m", "m", manifest_overrides={"extra": {"tail_sha256": digest}})
    assert load_tail(directory / "tail.pt", directory / "tail.json", CPU).model_id == "m"


def test_registry_refuses_missing_or_non_torchscript_files(tmp_path: Path) -> None:
    directory, _ = make_tail(tmp_path / "m", "m")
    with pytest.raises(RegistryError, match="does not exist"):
        load_tail(directory / "nope.pt", directory / "tail.json", CPU)
    (directory / "tail.pt").write_bytes(b"not a zip")
    with pytest.raises(RegistryError, match="not a loadable TorchScript"):
        load_tail(directory / "tail.pt", directory / "tail.json", CPU)
    (directory / "tail.json").write_text("{")
    with pytest.raises(RegistryError, match=r"tail\.json"):
        load_tail(directory / "tail.pt", directory / "tail.json", CPU)


def test_registry_refuses_duplicate_model_ids(tmp_path: Path) -> None:
    a, _ = make_tail(tmp_path / "a", "same")
    b, _ = make_tail(tmp_path / "b", "same", seed=1)
    registry = ModelRegistry([load_tail(a / "tail.pt", a / "tail.json", CPU)])
    with pytest.raises(RegistryError, match="served twice"):
        registry.add(load_tail(b / "tail.pt", b / "tail.json", CPU))


# ----------------------------------------------------------------------------- sessions


def _open(table: SessionTable, identity: bytes):
    return table.open(identity, model_id="m", codec=None, max_payload=10, device_name="d")


def test_sessions_are_bound_to_their_identity() -> None:
    table = SessionTable(max_sessions=10, idle_s=60)
    s1, _ = _open(table, b"a")
    s2, _ = _open(table, b"b")
    assert s1.session_id != s2.session_id and s1.session_id > 0
    assert table.lookup(b"a", s1.session_id) is s1
    assert table.lookup(b"b", s1.session_id) is None
    assert table.lookup(b"a", s1.session_id + 1) is None


def test_sessions_evict_least_recently_used_and_expire_when_idle() -> None:
    table = SessionTable(max_sessions=2, idle_s=60)
    a, _ = _open(table, b"a")
    _open(table, b"b")
    table.lookup(b"a", a.session_id)  # a is now the most recent
    _, evicted = _open(table, b"c")
    assert evicted is not None and evicted.identity == b"b"
    assert len(table) == 2
    expired = table.expire(now=time.monotonic() + 61)
    assert {s.identity for s in expired} == {b"a", b"c"} and len(table) == 0


# ----------------------------------------------------------------------------- JSON log


def test_server_logs_through_the_shared_rate_limited_json_log() -> None:
    """The server's events go through wire.logjson: one shape, repeated events capped."""
    from server import app
    from wire.logjson import log_to

    stream = io.StringIO()
    with log_to(stream, "info", max_per_second=3):
        log = app.get_logger(app.__name__)
        log.debug("hidden")
        log.info("hello", answer=42)
        for i in range(50):
            log.warning("noisy", i=i)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "hello" and lines[0]["answer"] == 42 and lines[0]["level"] == "info"
    assert lines[0]["logger"] == "server.app"
    noisy = [entry for entry in lines if entry["event"] == "noisy"]
    assert 3 <= len(noisy) <= 6  # at most 3 per second (the loop may straddle a second)
    assert all("ts" in entry for entry in lines)
