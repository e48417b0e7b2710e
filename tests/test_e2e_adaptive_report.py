"""The link-change verdict of ``splitfit-bench e2e --only adaptive`` reads the daemon's
choice from its partition_switch events, not from the frames' partitions: the first re-run
reported "moved after 11.8 s" for a daemon that was on the split all along (11.8 s was its
last cloud probe frame)."""

from __future__ import annotations

from benchmarks.e2e_adaptive import best_fixed_latency, change_verdict, chosen_timeline

T = 1000.0  # wall-clock time of the tc change


def _switch(t: float, old: str, new: str) -> dict:
    return {"event": "partition_switch", "ts": T + t, "old": old, "new": new}


def _verdict(events: list[dict], best_after: str) -> tuple[dict, tuple]:
    c = chosen_timeline(events, "cloud", T)
    c["best_fixed_after"] = best_after
    return c, change_verdict(c)


def test_a_daemon_already_on_the_new_best_needs_no_switch():
    c, (t, met) = _verdict([_switch(-10.3, "cloud", "split")], best_after="split")
    assert (c["before"], c["after"], c["switches_after_change"]) == ("split", "split", 0)
    assert (t, met) == (0.0, True)


def test_the_switch_time_is_when_the_daemon_last_moved_to_the_new_best():
    events = [_switch(2.0, "cloud", "split"), _switch(3.5, "split", "cloud"),
              _switch(4.5, "cloud", "split")]  # fmt: skip
    c, (t, met) = _verdict(events, best_after="split")
    assert (c["before"], c["after"]) == ("cloud", "split")
    assert (t, met) == (4.5, True)
    _, (t, met) = _verdict([_switch(6.0, "cloud", "split")], best_after="split")
    assert (t, met) == (6.0, False)


def test_ending_on_another_partition_misses_the_target():
    _, (t, met) = _verdict([_switch(1.0, "cloud", "split")], best_after="cloud")
    assert (t, met) == (None, False)
    _, (t, met) = _verdict([], best_after="split")  # stayed on cloud, the Wi-Fi choice
    assert (t, met) == (None, False)


def test_best_fixed_latency_compares_only_the_change_runs_partitions():
    rows = [
        {"link": "WiFi", "config": "cloud", "p50_ms": 30.0},
        {"link": "WiFi", "config": "split", "p50_ms": 40.0},
        {"link": "WiFi", "config": "local", "p50_ms": 10.0},
        {"link": "3G", "config": "cloud", "p50_ms": 300.0},
        {"link": "3G", "config": "split", "p50_ms": 45.0},
    ]
    assert best_fixed_latency(rows, ("cloud", "split")) == {
        "best_fixed_before": "cloud", "best_fixed_after": "split",
    }  # fmt: skip
