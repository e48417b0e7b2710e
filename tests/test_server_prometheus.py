"""The server's metrics through a real Prometheus, and the Grafana dashboard built on them.

Why a real Prometheus: the exposition endpoint is only useful if a scraper accepts it and
the queries operators run give numbers. The test starts Debian's ``prometheus`` binary
(``make test`` installs it; skipped with the reason where it is absent) scraping a real
``TailServer`` on 127.0.0.1, and reads the ``splitfit_*`` series back through its HTTP API,
then runs every query of ``docs/grafana/splitfit.json`` through it.

The dashboard test needs no Prometheus: each metric a panel queries must be one the server
really exposes (a renamed metric would leave an empty panel, silently), with the labels the
query groups or filters by.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from support.waiting import wait_until

pytest.importorskip("torch")
from prometheus_client.parser import text_string_to_metric_families
from support.server_side import CHW, QUANT, hello_for, make_tail, random_payload, server_config

from server.app import TailServer
from server.client import TailClient
from wire.codecs import FeatureCodec
from wire.protocol import ErrorCode, ErrorMsg, Frame, Reply

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana" / "splitfit.json"
PROMETHEUS = shutil.which("prometheus")
METRIC = re.compile(r"\bsplitfit_[a-z0-9_]+\b")
# Labels Prometheus itself adds to every scraped series, or that histograms carry.
IMPLICIT_LABELS = {"instance", "job", "le"}
# Grafana's variables, as Grafana would substitute them for a 1 s scrape interval.
# Series the tests cannot make without a CURVE server: their labels are not checked.
UNSAMPLED = {"splitfit_auth_failures_total"}
GRAFANA_VARS = {"$__rate_interval": "10s", "$model": ".*", "${datasource}": ""}


# ----------------------------------------------------------------------------- helpers


def _poison_payload() -> bytes:
    """A frame PoisonTail refuses (channel 1 at (0, 0) at the top of the range): its batch
    raises, the frame is re-run alone, fails again, and its sender gets ERROR INTERNAL."""
    q = np.zeros(CHW, dtype=np.int8)
    q[1, 0, 0] = 127
    return FeatureCodec(CHW, QUANT, "raw").encode_int8(q, layout="CHW")


def _honest_payload(rng: np.random.Generator) -> bytes:
    while True:
        payload, x = random_payload(rng)
        if x[0, 0, 0] < 6.0 and x[1, 0, 0] < 6.0:  # clear of PoisonTail's trigger
            return payload


def _touch_every_labelled_series(srv: TailServer, rng: np.random.Generator) -> None:
    """Replies, an ERROR for an unknown session, a dropped client ERROR, an isolated failure."""
    with TailClient(srv.endpoints[0], timeout_s=10.0) as c:
        c.hello(hello_for())
        for _ in range(3):
            assert isinstance(c.infer(_honest_payload(rng)), Reply)
        c.send(Frame(session_id=987654, seq=5, capture_ts_us=0, payload=_honest_payload(rng)))
        err = c.receive()
        assert isinstance(err, ErrorMsg) and err.code == ErrorCode.UNKNOWN_SESSION
        c.send(c.frame(_poison_payload(), seq=99))
        err = c.receive()
        assert isinstance(err, ErrorMsg) and err.code == ErrorCode.INTERNAL and err.seq == 99
        c.send(ErrorMsg(ErrorCode.INTERNAL, "device hiccup"))  # counted as a drop, unanswered
        assert isinstance(c.infer(_honest_payload(rng)), Reply)  # the drop was processed


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def _scrape_with(port: int, needle: str) -> str | None:
    text = _scrape(port)
    return text if needle in text else None


def _exposed(text: str) -> tuple[set[str], dict[str, set[str]]]:
    """Sample names a query can use (from each family's type) and their labels seen."""
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
    }
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        for sample in family.samples:
            names.add(sample.name)
            labels.setdefault(sample.name, set()).update(sample.labels)
    return names, labels


def _dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            queries.append(var["definition"])
    return queries


def _grouping_labels(expr: str) -> set[str]:
    """Labels a query groups by or matches on: ``by (a, b)`` and ``{a="..", b=~".."}``."""
    found: set[str] = set()
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        found.update(x.strip() for x in group.split(",") if x.strip())
    for selector in re.findall(r"\{([^}]*)\}", expr):
        found.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    found.update(re.findall(r"label_values\([^,]+,\s*([a-zA-Z_]+)\)", expr))
    return found


@pytest.fixture
def poison_server(tmp_path: Path):
    directory, _ = make_tail(tmp_path / "p", "tiny-model", poison=True, seed=3)
    cfg = server_config([directory], tmp_path, batching={"max_batch": 8, "max_wait_us": 2000})
    with TailServer(cfg) as srv:
        yield srv


# ----------------------------------------------------------------------------- dashboard


def _problems(queries: list[str], names: set[str], labels: dict[str, set[str]]) -> list[str]:
    """What is wrong with each query against what the server exports (empty: nothing)."""
    problems = []
    for expr in queries:
        used = set(METRIC.findall(expr))
        if not used:
            problems.append(f"{expr}: reads no splitfit_* series")
        missing = used - names
        if missing:
            problems.append(f"{expr}: the server exports no {sorted(missing)}")
        if any(m not in labels for m in used):
            continue  # no sample to read labels from (see UNSAMPLED)
        seen = set().union(*(labels[m] for m in used)) | IMPLICIT_LABELS
        unknown = _grouping_labels(expr) - seen
        if unknown:
            problems.append(f"{expr}: no series of {sorted(used)} has label(s) {sorted(unknown)}")
    return problems


def test_dashboard_queries_only_series_the_server_exports(
    poison_server: TailServer, wait_until
) -> None:
    _touch_every_labelled_series(poison_server, np.random.default_rng(1))
    port = poison_server.metrics_port
    # The load gauges are set by the server's housekeeping pass (about once a second).
    text = wait_until(lambda: _scrape_with(port, "splitfit_utilization{"), 10)
    names, labels = _exposed(text)
    queries = _dashboard_queries()
    assert len(queries) >= 10
    queried = set().union(*(set(METRIC.findall(q)) for q in queries))
    assert {m for m in queried if m not in labels} == UNSAMPLED
    assert _problems(queries, names, labels) == []
    # What the dashboard is for: throughput, latency quantiles, batches, errors, isolation,
    # sessions.
    for wanted in (
        "splitfit_replies_total",
        "splitfit_latency_seconds_bucket",
        "splitfit_batch_size_bucket",
        "splitfit_errors_total",
        "splitfit_isolated_total",
        "splitfit_sessions",
    ):
        assert wanted in queried, f"no panel shows {wanted}"


def test_dashboard_check_catches_a_renamed_metric_or_label(poison_server: TailServer) -> None:
    """The check above can fail: a name or label the server does not export is reported."""
    _touch_every_labelled_series(poison_server, np.random.default_rng(1))
    names, labels = _exposed(_scrape(poison_server.metrics_port))
    bad = [
        "sum by (model) (rate(splitfit_reply_total[1m]))",
        'histogram_quantile(0.5, sum by (le) (rate(splitfit_latency_bucket{stage="total"}[1m])))',
        "sum by (status) (rate(splitfit_errors_total[1m]))",
        "up",
    ]
    problems = _problems(bad, names, labels)
    assert len(problems) == 4, problems
    assert "splitfit_reply_total" in problems[0] and "splitfit_latency_bucket" in problems[1]
    assert "['status']" in problems[2] and "reads no splitfit_" in problems[3]


# ----------------------------------------------------------------------------- real Prometheus


class Prometheus:
    """Debian's prometheus on 127.0.0.1:port scraping one target every second."""

    def __init__(self, workdir: Path, port: int, target_port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: splitfit\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.base = f"http://127.0.0.1:{port}"
        self.log = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    def get(self, path: str, **params: str) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                urllib.request.urlopen(f"{self.base}/-/ready", timeout=2).close()
            except OSError:
                return False
            return True

        wait_until(ready, timeout, interval=0.2, what="prometheus ready")

    def query(self, expr: str) -> list[dict]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def value_when(self, expr: str, wanted: float, timeout: float = 20) -> float:
        """Poll until ``expr`` (one series) equals ``wanted``; return the last value seen."""
        seen = [float("nan")]

        def arrived() -> bool:
            result = self.query(expr)
            if len(result) == 1:
                seen[0] = float(result[0]["value"][1])
            return seen[0] == wanted

        with contextlib.suppress(AssertionError):  # the caller compares what was seen
            wait_until(arrived, timeout, interval=0.25)
        return seen[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.mark.slow
@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="Debian's prometheus binary is not installed (make test installs it when run as root)",
)
def test_real_prometheus_scrapes_splitfit_series(
    poison_server: TailServer, tmp_path: Path, free_port
) -> None:
    srv = poison_server
    prom = Prometheus(tmp_path / "prom", free_port(), srv.metrics_port)
    stop = threading.Event()
    try:
        prom.wait_ready()
        _touch_every_labelled_series(srv, np.random.default_rng(2))

        def stream() -> None:  # traffic across several scrapes, so rates are not zero
            rng = np.random.default_rng(3)
            with TailClient(srv.endpoints[0], timeout_s=10.0) as c:
                c.hello(hello_for(device_name="stream"))
                while not stop.is_set():
                    assert isinstance(c.infer(_honest_payload(rng)), Reply)
                    time.sleep(0.02)

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        assert prom.value_when('up{job="splitfit"}', 1.0) == 1.0, prom.get("/api/v1/targets")
        target = prom.get("/api/v1/targets")["data"]["activeTargets"]
        assert [t["scrapeUrl"] for t in target] == [f"http://127.0.0.1:{srv.metrics_port}/metrics"]
        time.sleep(4.0)  # a few scrapes while frames flow
        stop.set()
        streamer.join(20)
        assert not streamer.is_alive()
        window_end = time.time()  # the dashboard queries below look at the last 4 s of traffic

        # The counters Prometheus stored are exactly the server's own, once it scraped again.
        replies = srv.metrics.value("splitfit_replies_total", {"model": "tiny-model"})
        assert replies > 20
        got = prom.value_when('splitfit_replies_total{model="tiny-model"}', replies)
        assert got == replies
        assert prom.value_when('splitfit_errors_total{code="UNKNOWN_SESSION"}', 1.0) == 1.0
        assert prom.value_when('splitfit_errors_total{code="INTERNAL"}', 1.0) == 1.0
        assert prom.value_when('splitfit_isolated_total{outcome="failed"}', 1.0) == 1.0
        assert prom.value_when('splitfit_drops_total{reason="client_error"}', 1.0) == 1.0
        sessions = prom.query("splitfit_sessions")
        assert len(sessions) == 1 and 1.0 <= float(sessions[0]["value"][1]) <= 2.0, sessions
        total = srv.metrics.value("splitfit_latency_seconds_count", {"stage": "total"})
        assert prom.value_when('splitfit_latency_seconds_count{stage="total"}', total) == total

        # Every dashboard query runs in Prometheus; the ones over series with traffic give
        # finite numbers (p99 latency within the histogram's range, batch sizes >= 1).
        for expr in _dashboard_queries():
            promql = expr
            for var, value in GRAFANA_VARS.items():
                promql = promql.replace(var, value)
            if promql.startswith("label_values("):
                metric, label = re.match(r"label_values\((\w+),\s*(\w+)\)", promql).groups()
                got = prom.get(f"/api/v1/label/{label}/values", **{"match[]": metric})
                assert got["data"] == ["tiny-model"], got
                continue
            answer = prom.get(
                "/api/v1/query_range",
                query=promql,
                start=str(window_end - 4),
                end=str(window_end),
                step="1",
            )
            assert answer["status"] == "success", (promql, answer)
            if METRIC.search(promql).group(0).startswith(("splitfit_auth_failures",)):
                continue  # nothing was refused: an empty panel is the right answer
            values = [
                float(v)
                for series in answer["data"]["result"]
                for _, v in series["values"]
                if not math.isnan(float(v))
            ]
            assert values, f"no number for {promql}"
            if "histogram_quantile" in promql and "latency" in promql:
                assert all(0 < v <= 5.0 for v in values), (promql, values)
            if "batch_size_sum" in promql:  # the exact mean: every batch here held >= 1
                assert all(v >= 1 for v in values), (promql, values)
            if "batch_size" in promql and "histogram_quantile" in promql:  # inside (0, 512]
                assert all(0 < v <= 512 for v in values), (promql, values)
    finally:
        stop.set()
        prom.stop()
