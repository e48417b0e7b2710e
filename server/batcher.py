"""Dynamic batcher: one compute thread per model, Triton's size-or-delay rule.

Why: a CNN tail on CPU or GPU is far cheaper per image in a batch than one at a time,
but a device must not wait long for company. A batch is dispatched as soon as it holds
``max_batch`` requests, or when the *oldest* queued request has waited ``max_wait_us``,
whichever comes first (Triton's ``max_queue_delay_microseconds``). ``max_batch = 1`` turns
batching off; ``max_wait_us = 0`` batches only what is already queued.

Admission is two-step so that the queue bound also covers requests still being decoded on
the decode pool: ``reserve()`` before decoding (refused when ``max_queue`` are pending,
which the server answers with OVERLOADED), then ``submit()`` or ``release()``.

The batcher also keeps the load figures the device uses for partition switching
(BottleNet Sec. 3.4): pending requests, busy fraction over a sliding window, and recent
compute time per item.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Runs one batch; may return a "deliver" callable that the batcher calls after it has
# updated its load figures, so a device that reads a reply and pings at once sees them.
ProcessFn = Callable[[list[T]], Callable[[], None] | None]


class DynamicBatcher(Generic[T]):
    """Queue + compute thread for one model. ``process`` runs a whole batch."""

    def __init__(
        self,
        name: str,
        process: ProcessFn,
        *,
        max_batch: int,
        max_wait_us: int,
        max_queue: int,
        utilization_window_s: float = 1.0,
        on_error: Callable[[list[T], BaseException], None] | None = None,
        thread_init: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_us < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_us >= 0")
        self.name = name
        self.max_batch = max_batch
        self.max_wait_ns = max_wait_us * 1000
        self.max_queue = max_queue
        self._process = process
        self._on_error = on_error
        self._thread_init = thread_init
        # Injectable so tests step time instead of sleeping through max_wait and the window.
        self._clock = clock
        self._computing = 0
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, T]] = deque()  # (enqueue time ns, item)
        self._pending = 0  # reserved: decoding + queued + computing
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._window_ns = int(utilization_window_s * 1e9)
        self._busy: deque[tuple[int, int]] = deque()  # finished (start, end) compute intervals
        self._busy_sum = 0  # sum of the intervals in _busy, ns
        self._busy_since: int | None = None
        self._compute_ms_per_item = 0.0
        self.batches_run = 0
        self.items_run = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> DynamicBatcher[T]:
        if self._thread is not None:
            raise RuntimeError(f"batcher {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"batcher-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish everything already submitted, then end the compute thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ------------------------------------------------------------------ admission

    def reserve(self) -> bool:
        """Claim a queue slot before decoding; False means overloaded."""
        with self._cond:
            if self._pending >= self.max_queue or self._stopping:
                return False
            self._pending += 1
            return True

    def release(self) -> None:
        """Give back a reserved slot whose request never made it (decode failed)."""
        with self._cond:
            self._pending = max(0, self._pending - 1)

    def submit(self, item: T) -> None:
        """Queue a decoded request; its slot must have been reserved."""
        with self._cond:
            self._queue.append((self._now_ns(), item))
            if len(self._queue) >= self.max_batch or len(self._queue) == 1:
                self._cond.notify()

    def _now_ns(self) -> int:
        return round(self._clock() * 1e9)

    # ------------------------------------------------------------------ load

    @property
    def queue_depth(self) -> int:
        """Requests decoding or waiting, not counting the batch being computed."""
        return max(0, self._pending - self._computing)

    @property
    def compute_ms_per_item(self) -> float:
        return self._compute_ms_per_item

    def utilization(self) -> float:
        """Busy fraction of the last window (0..1)."""
        now = self._now_ns()
        lo = now - self._window_ns
        with self._cond:
            while self._busy and self._busy[0][1] <= lo:
                start, end = self._busy.popleft()
                self._busy_sum -= end - start
            busy = self._busy_sum
            if self._busy and self._busy[0][0] < lo:
                busy -= lo - self._busy[0][0]
            if self._busy_since is not None:
                busy += now - max(self._busy_since, lo)
        return min(1.0, busy / self._window_ns)

    # ------------------------------------------------------------------ compute thread

    def _next_batch(self) -> list[tuple[int, T]] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            # The oldest request sets the deadline; collect until full or due.
            deadline = self._queue[0][0] + self.max_wait_ns
            while len(self._queue) < self.max_batch and not self._stopping:
                remaining = deadline - self._now_ns()
                if remaining <= 0:
                    break
                self._cond.wait(remaining / 1e9)
            n = min(self.max_batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._computing = n
            self._busy_since = self._now_ns()
            return batch

    def _run(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            items = [item for _, item in batch]
            start = self._busy_since or self._now_ns()
            deliver = None
            try:
                deliver = self._process(items)
            except BaseException as exc:  # the compute thread must outlive a bad batch
                if self._on_error is not None:
                    with contextlib.suppress(Exception):
                        self._on_error(items, exc)
            end = self._now_ns()
            with self._cond:
                self._busy_since = None
                self._computing = 0
                self._busy.append((start, end))
                self._busy_sum += end - start
                while self._busy and self._busy[0][1] <= end - self._window_ns:
                    s, e = self._busy.popleft()
                    self._busy_sum -= e - s
                self._pending = max(0, self._pending - len(items))
                per_item_ms = (end - start) / 1e6 / len(items)
                if self.batches_run == 0:
                    self._compute_ms_per_item = per_item_ms
                else:
                    self._compute_ms_per_item += 0.2 * (per_item_ms - self._compute_ms_per_item)
                self.batches_run += 1
                self.items_run += len(items)
            if deliver is not None:
                try:
                    deliver()
                except Exception as exc:
                    if self._on_error is not None:
                        with contextlib.suppress(Exception):
                            self._on_error(items, exc)
