"""The ``ray`` tail backend: the ZeroMQ front end hands decoded frames to Ray Serve.

Why the front end keeps its own queue bound and timeouts: Ray may lose a replica, or the
whole cluster, while devices keep streaming. Every frame handed to :class:`RayTail` ends in
exactly one callback, a result (``complete``) or a typed failure (``fail``), within
``tail.request_timeout_s``; none is lost silently and no device waits for a reply that will
never come.

Fault handling (documented for operators in server/README.md):

- a replica dies mid-request: the request is retried once (inference is idempotent; Ray's
  router sends the retry to a live replica); if that fails too, ``OVERLOADED``;
- a request exceeds ``request_timeout_s``: ``OVERLOADED`` with "timed out";
- the cluster becomes unreachable (its GCS port stops answering): frames are answered at
  once with ``OVERLOADED`` "tail backend unavailable" while a supervisor thread probes the
  cluster every ``reconnect_s``; when it answers again the front end reconnects, re-deploys
  its applications and replies resume.

``OVERLOADED`` is the code because it means what the device should do: this server cannot
take work now, retry later or switch partition (BottleNet Sec. 3.4); it needs no change to
the wire protocol or to boards already deployed.

Ray is imported here only; ``server.app`` imports this module only when
``tail.backend = "ray"``, so the default server never needs the ``ray`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.config import ConfigError, ModelEntry, TailSection
from server.isolation import ItemFailure
from wire.protocol import ErrorCode

try:
    import ray
    from ray import serve
except ImportError as exc:  # the one-line answer to a missing extra
    raise ConfigError(
        "tail.backend = 'ray' needs Ray Serve, which is not installed: "
        f"pip install 'splitfit[ray]' ({exc})"
    ) from None

from server.ray_tail import TailResult, build_app

_PROBE_TIMEOUT_S = 1.0
_LOST_AFTER = 2  # consecutive failed probes before the cluster is declared lost
_DEPLOY_TIMEOUT_S = 180.0


class BackendUnavailable(ConnectionError):
    """The Ray cluster cannot be reached or cannot run the tail; one actionable line.

    A ``ConnectionError`` (an ``OSError``), so ``splitfit-server`` prints it as one line and
    exits non-zero like any other start-up failure.
    """


# items, outcomes, compute start ns, end ns, size of the replica's batch
Complete = Callable[[list[Any], list[Any], int, int, int], None]
Fail = Callable[[list[Any], ErrorCode, str], None]


def _gcs_address(address: str) -> str:
    """``host:port`` of the cluster's GCS; ``auto`` = the cluster this machine joined."""
    if address != "auto":
        return address.removeprefix("ray://")
    from ray._private.services import canonicalize_bootstrap_address

    found = canonicalize_bootstrap_address("auto")
    if not found:
        raise BackendUnavailable(
            "tail.ray_address = 'auto' but this machine has joined no Ray cluster: run "
            "`ray start --head` (or `ray start --address HEAD:6379`) first, or set the address"
        )
    return found


def _probe(gcs: str) -> str | None:
    """None when the GCS port accepts a TCP connection, else why not (one line)."""
    host, _, port = gcs.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), _PROBE_TIMEOUT_S):
            return None
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def app_name(model_id: str) -> str:
    """The Ray Serve application a model is deployed as, shared by every front end.

    Why a digest and not a prefix of the id: two ids that share a long prefix (``…-v1`` and
    ``…-v2``) must never land on one application; the full id may also be longer or hold
    characters Ray's names do not want.
    """
    return "splitfit-" + hashlib.sha256(model_id.encode()).hexdigest()[:24]


class RayCluster:
    """This process's connection to one Ray cluster, shared by every model it serves.

    Why one object: a process holds a single Ray driver connection; losing the cluster
    affects every model at once, and reconnecting re-deploys all of them.
    """

    def __init__(self, cfg: TailSection, log: Any) -> None:
        self.cfg = cfg
        self.log = log
        self.gcs = _gcs_address(cfg.ray_address)
        self.available = False
        self.generation = 0  # bumped on every (re)connect; handles carry the one they came from
        self._tails: list[RayTail] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def connect(self) -> None:
        """Join the cluster (first time or after a loss); raises BackendUnavailable."""
        why = _probe(self.gcs)
        if why is not None:
            raise BackendUnavailable(
                f"Ray cluster at {self.gcs} (tail.ray_address = {self.cfg.ray_address!r}) is "
                f"unreachable: {why}"
            )
        if ray.is_initialized():
            ray.shutdown()
        try:
            ray.init(
                address=self.gcs,
                log_to_driver=False,
                logging_level=logging.ERROR,
                configure_logging=False,
            )
            serve.start(proxy_location="Disabled")
        except Exception as exc:
            with contextlib.suppress(Exception):
                ray.shutdown()
            raise BackendUnavailable(
                f"cannot join the Ray cluster at {self.gcs}: {type(exc).__name__}: {exc}"
            ) from None
        self.generation += 1
        for tail in self._tails:
            tail.deploy()
        self.available = True

    def add(self, tail: RayTail) -> None:
        self._tails.append(tail)

    def start_supervisor(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="splitfit-ray", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with contextlib.suppress(Exception):
            ray.shutdown()

    def _supervise(self) -> None:
        failures = 0
        while not self._stop.wait(self.cfg.reconnect_s):
            why = _probe(self.gcs)
            if self.available:
                failures = failures + 1 if why else 0
                if failures >= _LOST_AFTER:
                    self.available = False
                    self.log.error("ray_lost", gcs=self.gcs, error=why)
                continue
            if why is not None:
                continue
            try:
                self.connect()
            except Exception as exc:
                self.log.warning("ray_reconnect_failed", gcs=self.gcs, error=str(exc)[:300])
                continue
            failures = 0
            self.log.info("ray_recovered", gcs=self.gcs, generation=self.generation)


@dataclass
class _Load:
    window_ns: int
    done: deque  # (monotonic ns, compute ms per item) of recent results


class RayTail:
    """One model on Ray Serve, behind the same admission and load API as DynamicBatcher."""

    def __init__(
        self,
        cluster: RayCluster,
        model_id: str,
        entry: ModelEntry,
        *,
        top_k: int,
        threads: int,
        complete: Complete,
        fail: Fail,
    ) -> None:
        self.cluster = cluster
        self.model_id = model_id
        self.name = app_name(model_id)
        self.max_batch = entry.batching.max_batch
        self.max_wait_ns = entry.batching.max_wait_us * 1000
        self.max_queue = entry.batching.max_queue
        self._entry = entry
        self._top_k = top_k
        self._threads = threads
        self._complete = complete
        self._fail = fail
        self._handle: Any = None
        self._lock = threading.Lock()
        self._pending = 0
        self._compute_ms_per_item = 0.0
        self._load = _Load(1_000_000_000, deque())
        self.items_run = 0
        self.batches_run = 0  # batches are formed on the replicas; counted by distinct size
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name=f"ray-{model_id[:8]}", daemon=True
        )
        self._inflight: set[Future] = set()
        cluster.add(self)

    # ------------------------------------------------------------------ deployment

    def deploy(self) -> None:
        """Reuse the application when another front end deployed it, else deploy it."""
        try:
            handle = serve.get_app_handle(self.name)
        except Exception:
            handle = None
        if handle is None:
            cfg = self.cluster.cfg
            autoscaling = None
            if cfg.autoscaling is not None:
                a = cfg.autoscaling
                autoscaling = {
                    "min_replicas": a.min_replicas,
                    "max_replicas": a.max_replicas,
                    "target_ongoing_requests": a.target_ongoing_requests,
                }
            app = build_app(
                self.name,
                self._entry.tail.read_bytes(),
                self._entry.manifest.read_bytes(),
                top_k=self._top_k,
                max_batch=self.max_batch,
                max_wait_us=self.max_wait_ns // 1000,
                threads=self._threads,
                num_replicas=cfg.num_replicas,
                autoscaling=autoscaling,
                replica_cpus=cfg.replica_cpus,
            )
            done: Future = Future()

            def run() -> None:
                try:
                    done.set_result(serve.run(app, name=self.name, route_prefix=None))
                except BaseException as exc:
                    done.set_exception(exc)

            threading.Thread(target=run, name="splitfit-ray-deploy", daemon=True).start()
            try:
                handle = done.result(_DEPLOY_TIMEOUT_S)
            except FutureTimeout:
                raise BackendUnavailable(
                    f"Ray Serve did not start {self.name} within {_DEPLOY_TIMEOUT_S:.0f} s: "
                    f"does the cluster have {cfg.replica_cpus} CPU(s) free per replica?"
                ) from None
            except Exception as exc:
                raise BackendUnavailable(
                    f"Ray Serve could not deploy {self.name}: {type(exc).__name__}: {exc}"
                ) from None
        self._handle = handle
        self.cluster.log.info(
            "ray_deployed", model_id=self.model_id, app=self.name, gcs=self.cluster.gcs
        )

    @property
    def handle(self) -> Any:
        """The DeploymentHandle (tests and the benchmark ask replicas for their pid)."""
        return self._handle

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RayTail:
        self._loop_thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Wait for frames in flight (each ends in a reply or an error), then stop the loop."""
        deadline = time.monotonic() + (timeout or 0)
        while self._inflight and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._loop_thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(5)

    # ------------------------------------------------------------------ admission

    def reserve(self) -> bool:
        with self._lock:
            if self._pending >= self.max_queue:
                return False
            self._pending += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)

    def submit(self, item: Any) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._call(item), self._loop)
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)

    # ------------------------------------------------------------------ load

    @property
    def queue_depth(self) -> int:
        return self._pending

    @property
    def compute_ms_per_item(self) -> float:
        return self._compute_ms_per_item

    def utilization(self) -> float:
        """Share of the replicas' time spent computing over the last second (estimate)."""
        now = time.monotonic_ns()
        done = self._load.done
        with self._lock:
            while done and done[0][0] < now - self._load.window_ns:
                done.popleft()
            busy_ms = sum(ms for _, ms in done)
        replicas = self.cluster.cfg.num_replicas
        if self.cluster.cfg.autoscaling is not None:
            replicas = max(1, self.cluster.cfg.autoscaling.min_replicas)
        return min(1.0, busy_ms / (self._load.window_ns / 1e6) / replicas)

    # ------------------------------------------------------------------ one frame

    async def _call(self, item: Any) -> None:
        start_ns = time.monotonic_ns()
        timeout = self.cluster.cfg.request_timeout_s
        error = ""
        result: TailResult | None = None
        try:
            for attempt in range(2):
                if not self.cluster.available or self._handle is None:
                    error = f"tail backend unavailable: Ray cluster at {self.cluster.gcs} lost, reconnecting"
                    break
                remaining = timeout - (time.monotonic_ns() - start_ns) / 1e9
                if remaining <= 0:
                    error = f"tail backend timed out after {timeout:g} s"
                    break
                try:
                    result = await asyncio.wait_for(
                        self._handle.remote(item.tensor), timeout=remaining
                    )
                    break
                except TimeoutError:
                    error = f"tail backend timed out after {timeout:g} s"
                    break
                except Exception as exc:  # replica died, actor unavailable, cluster gone...
                    error = f"tail backend unavailable: {type(exc).__name__}"
                    if attempt == 0:
                        self.cluster.log.warning(
                            "ray_retry", model_id=self.model_id, seq=item.seq, error=error
                        )
            end_ns = time.monotonic_ns()
            if result is None:
                self._fail([item], ErrorCode.OVERLOADED, error)
                return
            outcome: tuple[np.ndarray, np.ndarray] | ItemFailure
            if result.failure is not None:
                outcome = result.failure
            else:
                assert result.ids is not None and result.scores is not None
                outcome = (result.ids, result.scores)
            per_item_ms = result.compute_us / 1e3 / max(1, result.batch_size)
            with self._lock:
                self._load.done.append((end_ns, per_item_ms))
                if self.items_run == 0:
                    self._compute_ms_per_item = per_item_ms
                else:
                    self._compute_ms_per_item += 0.05 * (per_item_ms - self._compute_ms_per_item)
                self.items_run += 1
            # The tail ran during the last compute_us of the call; the rest is queue + transport.
            compute_start = max(start_ns, end_ns - result.compute_us * 1000)
            self._complete([item], [outcome], compute_start, end_ns, result.batch_size)
        except Exception as exc:  # a bug here must still answer the frame
            with contextlib.suppress(Exception):
                self._fail([item], ErrorCode.INTERNAL, f"ray backend error: {type(exc).__name__}")
        finally:
            self.release()
