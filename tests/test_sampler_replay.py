"""The daemon's sampler of the simulated INA226 wakes in batches, not at 1 kHz (issue #18
item 10), with the same driver code and the same energies.

The daemon's per-frame pipeline time against a bare loop's is measured by
``splitfit-bench daemon``; here the mechanism: how often the sampler thread really sleeps and
wakes (each wake a GIL hand-off inside the main thread's frame), and that energy per window
still matches the simulated load's exact integral.
"""

from __future__ import annotations

import time

import pytest

from device.config import PowerSection
from device.power import PowerMeter
from hardware.sim import VirtualClock
from hardware.sim.replay import ReplayClock


def test_replay_clock_sleeps_for_real_once_per_batch_and_trails_real_time():
    real = VirtualClock(500.0)
    sleeps: list[float] = []

    def real_sleep(dt: float) -> None:
        sleeps.append(dt)
        real.sleep(dt)

    clock = ReplayClock(lag_s=0.005, batch_s=0.025, real=real, real_sleep=real_sleep)
    worst_lag = 0.0
    for _ in range(2000):  # a sampler loop ticking at 1 kHz for 2 s of virtual time
        clock.sleep(0.001)
        assert clock() <= real() - 0.005 + 1e-12  # never ahead of what has happened
        worst_lag = max(worst_lag, real() - clock())
    assert 70 <= len(sleeps) <= 80  # ~2 s / 25 ms, not 2000
    assert clock.wakeups == len(sleeps)
    assert worst_lag <= 0.005 + 0.025 + 0.001 + 1e-9


def test_resync_skips_time_nobody_sampled_and_never_goes_back():
    real = VirtualClock(10.0)
    clock = ReplayClock(lag_s=0.01, real=real, real_sleep=real.sleep)
    real.advance(3.0)
    clock.resync()
    assert clock() == pytest.approx(13.0 - 0.01)
    before = clock()
    real.t -= 1.0  # a clock that steps back must not drag the replay back
    clock.resync()
    assert clock() == before


def test_a_batch_waits_for_the_board_to_go_idle_but_not_for_ever():
    real = VirtualClock(0.0)
    events: list[tuple[str, float]] = []

    def real_sleep(dt: float) -> None:
        events.append(("sleep", dt))
        real.sleep(dt)

    def quiet(timeout: float) -> bool:
        events.append(("quiet", timeout))
        return True

    clock = ReplayClock(real=real, real_sleep=real_sleep, quiet=quiet, max_hold_s=0.02)
    for _ in range(100):
        clock.sleep(0.001)
    kinds = [k for k, _ in events]
    # every real sleep (one per batch) is followed by one bounded wait for idle
    assert kinds == ["sleep", "quiet"] * (len(kinds) // 2) and len(kinds) >= 6
    assert all(v == 0.02 for k, v in events if k == "quiet")


def test_the_meter_tells_the_replay_when_the_board_is_busy():
    meter = PowerMeter(PowerSection(monitor="sim", rate_hz=200.0))
    assert meter._replay is not None and meter._idle.is_set()
    with meter.busy():
        assert not meter._idle.wait(0.0)  # a batch now would run beside the head
        with meter.busy():  # nested (main loop + link thread)
            pass
        assert not meter._idle.is_set()
    assert meter._idle.is_set()


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "5"])
def test_bad_lag_is_refused(bad):
    with pytest.raises(ValueError, match="lag_s"):
        ReplayClock(lag_s=bad)


def test_the_daemons_sim_sampler_wakes_in_batches_and_measures_the_same_energy():
    meter = PowerMeter(PowerSection(monitor="sim", rate_hz=1000.0))
    load = meter.load
    assert load is not None and meter._replay is not None
    meter.start()
    try:
        t_start = time.monotonic()
        windows = []
        for _ in range(12):  # busy/idle bursts, as the daemon's head and encode make
            t0 = time.monotonic()
            with meter.busy():
                time.sleep(0.02)
            t1 = time.monotonic()
            windows.append((t0, t1))
            time.sleep(0.03)
        assert meter.wait_until(windows[-1][1] + 0.01, 1.0)
        elapsed = time.monotonic() - t_start
        stats = meter._sampler.stats()
        wakeups_per_s = meter._replay.wakeups / elapsed
    finally:
        meter.stop()
    # ~1 sample per conversion cycle (the chip converts faster than 1 kHz; one per tick)...
    assert stats.samples / elapsed > 600
    # ...from ~40 real wake-ups a second instead of ~1000.
    assert wakeups_per_s < 80, wakeups_per_s
    for t0, t1 in windows:
        measured = meter.energy_mj(t0, t1)
        truth = load.energy_j(t0, t1) * 1e3
        assert measured == pytest.approx(truth, rel=0.05)
