"""``[device] fps_limit``: the start-of-frame schedule, on a virtual clock (issue #18 item 4)."""

from __future__ import annotations

import itertools

import pytest

from device.pacing import FramePacer
from hardware.sim import VirtualClock


def _run(pacer: FramePacer, clock: VirtualClock, work_s: list[float]) -> list[float]:
    """Drive the pacer like the daemon's loop: wait (bounded), start, do the frame's work."""
    starts = []
    for work in work_s:
        while not pacer.wait(0.1):
            pass
        starts.append(clock())
        pacer.started()
        clock.advance(work)
    return starts


@pytest.mark.parametrize("fps", [2.0, 10.0])
def test_frames_start_one_period_apart_whatever_the_frame_costs(fps):
    clock = VirtualClock()
    pacer = FramePacer(fps, clock=clock, sleep=clock.sleep)
    # Frames of very different cost, all shorter than the period: the start times must not
    # depend on them (the old rule, sleep period - frame age, ran 3x too fast).
    work = [0.001, 0.03, 0.002, 0.049, 0.0, 0.01] * 5
    starts = _run(pacer, clock, work)
    period = 1.0 / fps
    assert starts == pytest.approx([starts[0] + k * period for k in range(len(work))], abs=1e-9)
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert rate == pytest.approx(fps, rel=1e-9)


def test_a_late_start_does_not_shift_the_schedule():
    clock = VirtualClock()
    late = {3: 0.03}  # the scheduler woke us 30 ms late once

    def sleep(dt: float) -> None:
        clock.sleep(dt + late.pop(len(starts), 0.0))

    pacer = FramePacer(10.0, clock=clock, sleep=sleep)
    starts: list[float] = []
    for _ in range(8):
        while not pacer.wait(1.0):
            pass
        starts.append(clock())
        pacer.started()
        clock.advance(0.005)
    t0 = starts[0]
    assert starts[3] == pytest.approx(t0 + 0.3 + 0.03)
    # ...and the frames after it are back on the 100 ms grid, not 30 ms behind it.
    assert starts[4:] == pytest.approx([t0 + 0.1 * k for k in range(4, 8)])


def test_a_slow_frame_is_not_followed_by_a_burst():
    clock = VirtualClock()
    pacer = FramePacer(10.0, clock=clock, sleep=clock.sleep)
    # Frame 2 takes 0.55 s (a stall): the next starts at once, then one period apart again.
    starts = _run(pacer, clock, [0.01, 0.01, 0.55, 0.01, 0.01, 0.01])
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[:2] == pytest.approx([0.1, 0.1])
    assert gaps[2] == pytest.approx(0.55)
    assert gaps[3:] == pytest.approx([0.1, 0.1])


def test_a_pipeline_slower_than_the_limit_runs_flat_out():
    clock = VirtualClock()
    pacer = FramePacer(10.0, clock=clock, sleep=clock.sleep)
    slept = []

    def sleep(dt: float) -> None:
        slept.append(dt)
        clock.sleep(dt)

    pacer._sleep = sleep
    starts = _run(pacer, clock, [0.15] * 5)
    assert slept == []
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx([0.15] * 4)


def test_wait_is_bounded_so_the_loop_keeps_its_duties():
    clock = VirtualClock()
    slept = []

    def sleep(dt: float) -> None:
        slept.append(dt)
        clock.sleep(dt)

    pacer = FramePacer(0.5, clock=clock, sleep=sleep)  # one frame every 2 s
    assert pacer.wait(0.1) is True  # nothing started yet: go
    pacer.started()
    polls = 0
    while not pacer.wait(0.1):
        polls += 1
    assert max(slept) <= 0.1 + 1e-12
    assert polls == 19 and sum(slept) == pytest.approx(2.0)


def test_no_limit_never_sleeps():
    clock = VirtualClock()
    pacer = FramePacer(0.0, clock=clock, sleep=lambda dt: pytest.fail("slept"))
    for _ in range(3):
        assert pacer.wait(0.1)
        pacer.started()
    assert pacer.due is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_limit_is_refused(bad):
    with pytest.raises(ValueError, match="fps_limit"):
        FramePacer(bad)
