"""The Ray Serve deployment that runs one tail: code that executes inside Ray replicas.

Why the tail travels as bytes: a replica may land on any node of the cluster, and a node
has no reason to share the front end's filesystem. The front end reads ``tail.pt`` and
``tail.json`` once and binds them into the application (Ray's object store carries them);
each replica writes them to a private temp dir and loads them with the same
``server.registry.load_tail`` check the local backend uses, so a mismatched pair fails the
deployment exactly as it fails a local start.

Batching is Ray Serve's ``@serve.batch`` with the model's ``max_batch`` / ``max_wait_us``
(set per deployment at replica start). Failure isolation is the local backend's rule
(``server.isolation``): a batch that raises is re-run item by item on the replica, so one
device's bad frame answers only that device with an error.

Imported only by the ``ray`` backend (``server.raybackend``), never by the default server.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ray import serve

from server.isolation import ItemFailure, run_isolated_report


@dataclass(frozen=True)
class TailResult:
    """One frame's answer from a replica: top-k, or that frame's own failure."""

    ids: np.ndarray | None
    scores: np.ndarray | None
    failure: ItemFailure | None
    compute_us: int  # wall time of the batch this frame was in
    batch_size: int
    pid: int  # the replica process (fault tests kill one by pid)


def _scores_problem(result: tuple[np.ndarray, np.ndarray]) -> str | None:
    if np.isfinite(result[1]).all():
        return None
    return "its scores are NaN/inf (features far outside what the tail was trained on)"


class TailReplica:
    """One replica: a loaded tail behind a dynamic batch."""

    def __init__(
        self,
        tail_pt: bytes,
        tail_json: bytes,
        *,
        top_k: int,
        max_batch: int,
        max_wait_s: float,
        threads: int,
    ) -> None:
        import torch

        from server.registry import load_tail

        if threads:
            torch.set_num_threads(threads)
        self._dir = Path(tempfile.mkdtemp(prefix="splitfit-tail-"))
        (self._dir / "tail.pt").write_bytes(tail_pt)
        (self._dir / "tail.json").write_bytes(tail_json)
        self.model = load_tail(self._dir / "tail.pt", self._dir / "tail.json", torch.device("cpu"))
        self.top_k = top_k
        self.infer.set_max_batch_size(max_batch)
        self.infer.set_batch_wait_timeout_s(max_wait_s)
        for size in sorted({1, max_batch}):  # first calls per shape build kernels: pay now
            self.model.topk(np.zeros((size, *self.model.input_chw), np.float32), 1)

    def pid(self) -> int:
        return os.getpid()

    async def __call__(self, tensor: np.ndarray) -> TailResult:
        return await self.infer(tensor)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def infer(self, tensors: list[np.ndarray]) -> list[TailResult]:
        # The compute runs off the event loop so requests keep queueing for the next batch.
        return await asyncio.to_thread(self._run, tensors)

    def _run(self, tensors: Sequence[np.ndarray]) -> list[TailResult]:
        start = time.perf_counter_ns()

        def run(chunk: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
            ids, scores = self.model.topk(np.stack(chunk), self.top_k)
            return list(zip(ids, scores, strict=True))

        report = run_isolated_report(tensors, run, _scores_problem)
        compute_us = (time.perf_counter_ns() - start) // 1000
        n, pid = len(tensors), os.getpid()
        results = []
        for outcome in report.outcomes:
            if isinstance(outcome, ItemFailure):
                results.append(TailResult(None, None, outcome, compute_us, n, pid))
            else:
                results.append(TailResult(outcome[0], outcome[1], None, compute_us, n, pid))
        return results


def build_app(
    name: str,
    tail_pt: bytes,
    tail_json: bytes,
    *,
    top_k: int,
    max_batch: int,
    max_wait_us: int,
    threads: int,
    num_replicas: int,
    autoscaling: dict | None,
    replica_cpus: float,
) -> serve.Application:
    """The bound application for one model (``serve.run`` deploys it)."""
    options: dict = {
        "name": name,
        "ray_actor_options": {"num_cpus": replica_cpus},
        # Ray's default (5) would cap every batch at 5: let a replica hold two batches' worth.
        "max_ongoing_requests": max(16, 2 * max_batch),
        "health_check_period_s": 2.0,
        "health_check_timeout_s": 10.0,
    }
    if autoscaling is not None:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = num_replicas
    deployment = serve.deployment(TailReplica).options(**options)
    return deployment.bind(
        tail_pt,
        tail_json,
        top_k=top_k,
        max_batch=max_batch,
        max_wait_s=max_wait_us / 1e6,
        threads=threads,
    )
