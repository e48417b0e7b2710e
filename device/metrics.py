"""Per-frame metrics (JSONL, size-rotated) and the rolling numbers behind the summary line.

Why rotate ourselves: the board's SD card is small and the daemon runs for months; a file
that only grows is a slow crash. Rotation renames ``m.jsonl`` -> ``m.jsonl.1`` ... and drops
the oldest, so disk use is bounded by ``max_bytes * (backups + 1)``.
"""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from hardware import rotation


@dataclass
class FrameRecord:
    """Everything measured about one frame, capture to reply. Times: ms unless noted."""

    seq: int
    head: str
    capture_ts: float  # wall clock, s
    capture_mono: float  # monotonic, s (the power sampler's clock)
    frame_number: int = -1
    label: str | None = None  # ground truth from a labelled camera (folder), if any
    capture_ms: float = 0.0
    preprocess_ms: float = 0.0
    head_ms: float = 0.0
    encode_ms: float = 0.0
    overhead_ms: float | None = None  # daemon bookkeeping beyond preprocess/head/encode
    overhead_cpu_ms: float | None = None  # the same, as main-thread CPU time
    model_cpu_ms: float = 0.0  # main-thread CPU in preprocess + head + encode
    bytes: int = 0
    head_t0: float = 0.0  # monotonic window of the head inference
    head_t1: float = 0.0
    sent_mono: float = 0.0
    reply_mono: float = 0.0
    rtt_ms: float | None = None
    latency_ms: float | None = None  # capture -> reply
    server_decode_ms: float | None = None
    server_queue_ms: float | None = None
    server_compute_ms: float | None = None
    server_load: dict[str, Any] | None = None
    energy_head_mj: float | None = None
    energy_frame_mj: float | None = None
    top1: int | None = None
    top1_label: str | None = None
    top1_score: float | None = None
    correct: bool | None = None
    status: str = "ok"  # ok | lost | dropped

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)  # shallow: asdict() deep-copies and costs ~10x more
        for k in (
            "capture_ms",
            "preprocess_ms",
            "head_ms",
            "encode_ms",
            "overhead_ms",
            "overhead_cpu_ms",
            "model_cpu_ms",
            "rtt_ms",
            "latency_ms",
            "energy_head_mj",
            "energy_frame_mj",
        ):
            if d[k] is not None:
                d[k] = round(d[k], 4)
        return d


class MetricsWriter:
    """Appends one JSON line per frame; rotates by size. Thread-safe."""

    def __init__(self, path: Path | None, max_bytes: int = 10_000_000, backups: int = 3) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fh: IO[str] | None = None
        self._lock = threading.Lock()
        self.lines = 0
        self.rotations = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open for months

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if rotation.due(self._fh.tell(), len(line), self.max_bytes):
                self._rotate()
            self._fh.write(line)
            self.lines += 1

    def _rotate(self) -> None:
        assert self._fh is not None and self.path is not None
        self._fh.close()
        rotation.rotate(self.path, self.backups)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self.rotations += 1

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                self._fh.close()
                self._fh = None


@dataclass
class Counters:
    """Monotonic counts of everything that can go wrong (or right) over the run."""

    captured: int = 0
    sent: int = 0
    replied: int = 0
    answered_local: int = 0  # frames answered by a local partition (chosen or fallback)
    lost: int = 0  # in flight past reply_timeout or across a session loss
    dropped_outage: int = 0
    dropped_buffer: int = 0  # evicted from the outage buffer
    dropped_send: int = 0
    late_replies: int = 0
    unknown_replies: int = 0
    malformed: int = 0
    server_errors: int = 0
    camera_errors: int = 0
    reconnects: int = 0
    switches: int = 0
    correct: int = 0
    scored: int = 0


@dataclass
class Rolling:
    """Recent completions for the periodic summary (fps, p50/p99 latency)."""

    window: int = 512
    times: deque = field(default_factory=lambda: deque(maxlen=512))
    latencies: deque = field(default_factory=lambda: deque(maxlen=512))

    def add(self, t_done: float, latency_ms: float | None) -> None:
        self.times.append(t_done)
        if latency_ms is not None:
            self.latencies.append(latency_ms)

    def fps(self, now: float, horizon_s: float = 10.0) -> float:
        recent = [t for t in self.times if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-6)
        return len(recent) / span

    def percentiles(self) -> tuple[float | None, float | None]:
        if not self.latencies:
            return None, None
        arr = np.fromiter(self.latencies, dtype=np.float64)
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))
