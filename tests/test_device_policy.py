"""Partition switching (BottleNet Sec. 3.4): server load moves work to the board, with
hysteresis and a dwell time so near-equal splits do not flap."""

from __future__ import annotations

import pytest

from device.policy import PartitionPolicy


def _policy(**kw) -> PartitionPolicy:
    p = PartitionPolicy(
        names=["early", "late"],
        active="early",
        hysteresis=0.15,
        min_dwell_s=1.0,
        bandwidth_bps=8e6,
        **kw,
    )
    # early split: cheap head, big tail; late split: more on the board, small tail.
    p.observe_device("early", head_ms=2.0, encode_ms=0.5, nbytes=1000)
    p.observe_device("late", head_ms=8.0, encode_ms=0.5, nbytes=500)
    p.set_tail_ms("early", 6.0)
    p.set_tail_ms("late", 1.0)
    return p


def test_estimate_is_head_plus_transfer_plus_loaded_tail():
    p = _policy()
    assert p.estimate_ms("early") == pytest.approx(2.0 + 0.5 + 1000 * 8 / 8e6 * 1e3 + 6.0)
    p.observe_load(queue_depth=3)
    assert p.estimate_ms("late") == pytest.approx(8.0 + 0.5 + 0.5 + 1.0 * 4)


def test_idle_server_keeps_early_split_loaded_server_switches_to_late():
    p = _policy()
    assert p.decide(now=10.0) is None  # 9.5 vs 10.0 ms: early is better
    p.observe_load(queue_depth=4)  # early: 2.5+1+30 = 33.5 ; late: 9+5 = 14
    sw = p.decide(now=10.0)
    assert sw is not None and (sw.old, sw.new) == ("early", "late")
    assert sw.estimates_ms["late"] < sw.estimates_ms["early"]
    p.switched("late", now=10.0)
    p.observe_load(queue_depth=0)  # idle again: early 9.5 ms vs late 10 ms, only 5 % better
    assert p.decide(now=11.5) is None  # hysteresis: stay
    p.set_tail_ms("late", 3.0)  # late now 12 ms: early is 21 % better
    assert p.decide(now=10.5) is None  # ... but the dwell time is not over yet
    assert p.decide(now=11.5).new == "early"


def test_hysteresis_blocks_marginal_improvements():
    p = _policy()
    p.set_tail_ms("early", 8.0)  # early 11.5 ms vs late 10 ms: 13 % better, below 15 %
    assert p.decide(now=10.0) is None
    p.set_tail_ms("early", 9.0)  # 12.5 vs 10: 20 % better
    assert p.decide(now=10.0).new == "late"


def test_no_decision_without_estimates_or_when_disabled():
    p = PartitionPolicy(names=["a", "b"], active="a", min_dwell_s=0.0)
    p.observe_device("a", 1.0, 0.1, 100)
    assert p.decide(now=5.0) is None  # b never measured
    q = _policy(enabled=False)
    q.observe_load(queue_depth=10)
    assert q.decide(now=10.0) is None
    with pytest.raises(ValueError, match="not one of"):
        PartitionPolicy(names=["a"], active="z")


def test_replies_refine_bandwidth_and_unfixed_tail():
    p = PartitionPolicy(names=["a", "b"], active="a", bandwidth_bps=1e6)
    for _ in range(50):
        # 1000 B in 1 ms of network time = 8 Mbit/s
        p.observe_reply("a", nbytes=1000, rtt_ms=3.0, server_ms=2.0, compute_ms=1.5, queue_depth=0)
    assert p.bandwidth_bps == pytest.approx(8e6, rel=0.01)
    assert p.splits["a"].tail_ms == pytest.approx(1.5)
