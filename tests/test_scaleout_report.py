"""The scale-out benchmark's report: medians, the issue's checks, and the files it writes.

Why test the report and not the numbers: the numbers belong in benchmarks/results (a shared
2-core machine makes them noisy); what must be right every time is how measured points turn
into the verdicts printed next to them (a wrong "no throughput loss: yes" would hide a
regression of the local batcher).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.scaleout import Point, plot, summarize, verdicts, write_markdown


def _point(backend: str, config: str, replicas: int, fe: int, clients: int, rps: float,
           p99: float, rnd: int = 0, errors: int = 0, unanswered: int = 0) -> Point:  # fmt: skip
    return Point(
        backend=backend, config=config, replicas=replicas, front_ends=fe, clients=clients,
        round=rnd, completed=int(rps * 10), window_s=10.0, warmup_s=1.0, throughput_rps=rps,
        p50_ms=p99 / 2, p99_ms=p99, mean_ms=p99 / 2, server_compute_ms_mean=20.0,
        server_queue_ms_mean=5.0, mean_batch_size=4.0, errors=errors, loadavg_1m=3.0,
        unanswered=unanswered,
    )  # fmt: skip


def _points(on_rps: float, off_rps: float, on_p99_ms: float) -> list[Point]:
    pts = []
    for rnd, jitter in enumerate((0.9, 1.1, 1.0)):  # medians must pick the middle round
        for n in (8, 64):
            pts.append(_point("local", "batching on", 1, 1, n, on_rps * jitter, on_p99_ms, rnd))
            pts.append(_point("local", "batching off", 1, 1, n, off_rps * jitter, 900.0, rnd))
            pts.append(_point("ray", "1 replica, 1 front end", 1, 1, n, 20.0 * jitter, 800, rnd))
            pts.append(
                _point("ray", "2 replicas, 1 front end", 2, 1, n, 30.0 * jitter, 700, rnd, 1)
            )
    return pts


def test_medians_and_checks_when_batching_holds_up() -> None:
    summary = summarize(_points(on_rps=40.0, off_rps=32.0, on_p99_ms=2500.0))
    on64 = next(r for r in summary if r["config"] == "batching on" and r["clients"] == 64)
    assert on64["rps"] == pytest.approx(40.0) and on64["rounds"] == 3
    assert on64["little_mean_ms"] == pytest.approx(64 / 40 * 1000)
    assert on64["p99_over_little"] == pytest.approx(2500 / 1600)
    checks = verdicts(summary)
    assert [c["clients"] for c in checks["local_batching"]] == [8, 64]
    assert all(c["no_throughput_loss"] for c in checks["local_batching"])
    assert all(c["on_over_off"] == pytest.approx(1.25) for c in checks["local_batching"])
    assert [c["p99_bounded"] for c in checks["local_batching"]] == [False, True]  # 8: 12.5x
    assert checks["ray"]["64"]["two_over_one_replica"] == pytest.approx(1.5)
    assert checks["ray_errors"] == 6 and checks["unanswered"] == 0
    assert checks["per_replica_rps"] == pytest.approx(20.0)
    # Local rows first, then Ray by replicas and front ends.
    assert [r["backend"] for r in summary][:4] == ["local"] * 4


def test_a_batcher_slower_than_no_batching_is_reported_as_a_loss(tmp_path: Path) -> None:
    summary = summarize(_points(on_rps=30.0, off_rps=32.0, on_p99_ms=3000.0))
    checks = verdicts(summary)
    assert not any(c["no_throughput_loss"] for c in checks["local_batching"])
    meta = {
        "tail": {"split": {"bottleneck_chw": [8, 28, 28]}},
        "cpu_count": 2,
        "loadavg_before": [5.0, 5.0, 5.0],
        "loadavg_after": [6.0, 6.0, 6.0],
        "duration_min_s": 8.0,
        "rounds": 3,
    }
    write_markdown(tmp_path / "s.md", meta, summary, checks)
    text = (tmp_path / "s.md").read_text()
    assert "no throughput loss: **NO**" in text and "other agents" in text
    assert text.count("| local |") == 4 and text.count("| ray |") == 4
    plot(tmp_path / "s.png", summary)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))  # written through a temp file, renamed
    json.dumps(checks)  # the JSON result carries the checks as they are
