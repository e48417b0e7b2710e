"""Prometheus metrics of one server instance, plus the optional HTTP endpoint.

Why a private ``CollectorRegistry`` per server: tests and the benchmark start several
servers in one process; the global default registry would refuse duplicate metric names
and mix their numbers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@dataclass
class _Endpoint:
    server: WSGIServer
    thread: threading.Thread


class ServerMetrics:
    """Every counter, gauge and histogram the server exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "splitfit_requests", "Messages received, by message type", ["type"], registry=r
        )
        self.replies = Counter(
            "splitfit_replies", "Inference replies sent, by model", ["model"], registry=r
        )
        self.errors = Counter(
            "splitfit_errors", "ERROR replies sent, by error code", ["code"], registry=r
        )
        self.drops = Counter(
            "splitfit_drops", "Messages dropped without a reply, by reason", ["reason"], registry=r
        )
        self.auth_failures = Counter(
            "splitfit_auth_failures",
            "Rejected connections (CURVE handshake/ZAP)",
            ["reason"],
            registry=r,
        )
        self.isolated = Counter(
            "splitfit_isolated",
            "Frames of a failed batch by what running them alone gave: rescued (answered) "
            "or failed (the tail fails on that frame alone; its sender gets an ERROR)",
            ["model", "outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "splitfit_batch_size",
            "Requests per tail invocation",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "splitfit_latency_seconds",
            "Server-side latency per request, by stage (decode, queue, compute, total)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "splitfit_queue_depth",
            "Requests decoding or waiting for the tail",
            ["model"],
            registry=r,
        )
        self.utilization = Gauge(
            "splitfit_utilization",
            "Fraction of recent wall time the tail was computing",
            ["model"],
            registry=r,
        )
        self.sessions = Gauge("splitfit_sessions", "Open device sessions", registry=r)
        self._endpoint: _Endpoint | None = None

    # ------------------------------------------------------------------ reading back

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0.0 when it was never touched)."""
        got = self.registry.get_sample_value(name, labels or {})
        return 0.0 if got is None else got

    def batch_size_counts(self, model: str) -> dict[float, int]:
        """Non-cumulative count of batches per histogram bucket upper bound."""
        counts: dict[float, int] = {}
        previous = 0.0
        for bound in (*BATCH_BUCKETS, float("inf")):
            le = "+Inf" if bound == float("inf") else str(float(bound))
            cumulative = self.value("splitfit_batch_size_bucket", {"model": model, "le": le})
            counts[bound] = int(cumulative - previous)
            previous = cumulative
        return counts

    # ------------------------------------------------------------------ HTTP endpoint

    def serve(self, host: str, port: int) -> int:
        """Start the exposition endpoint; returns the bound port (useful with port 0)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._endpoint = _Endpoint(server, thread)
        return int(server.server_address[1])

    def close(self) -> None:
        if self._endpoint is None:
            return
        self._endpoint.server.shutdown()
        self._endpoint.server.server_close()
        self._endpoint.thread.join(timeout=5)
        self._endpoint = None
