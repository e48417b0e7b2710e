"""Where the daemon's memory went with the demo's setup (issue #18 item 9), as mechanisms.

The RSS numbers themselves are measured by ``splitfit-bench daemon`` (daemon against a bare
loop, side by side); here: the simulated load keeps compact, bounded history in the daemon,
its noise cache stays small, and the reported peak RSS is the daemon's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from array import array

import pytest
from support.device_side import ROOT, start_peer, write_config

from device.config import PowerSection
from device.power import SIM_HISTORY, PowerMeter
from hardware.sim import SimulatedLoad


def test_simulated_load_history_is_compact():
    t = [0.0]
    load = SimulatedLoad(clock=lambda: t[0], max_history=200_000)
    for k in range(10_000):
        t[0] += 1e-3
        load.set_busy(k % 2 == 0)
    for hist in (load._times, load._levels, load._cum1, load._cum2):
        # 8 bytes an entry, not a 32-byte float object plus an 8-byte list slot
        assert isinstance(hist, array) and hist.itemsize == 8
        assert len(hist) == 10_001
    # exactness is unchanged: 0.5 s busy + 0.5 s idle at the levels' watts (no noise)
    quiet = SimulatedLoad(noise_w=0.0, source_ohms=0.0, clock=lambda: t[0])
    t0 = t[0]
    for k in range(100):
        t[0] += 0.01
        quiet.set_busy(k % 2 == 0)
    e = quiet.energy_j(t0, t[0])
    assert e == pytest.approx(0.5 * quiet.busy_w + 0.5 * quiet.idle_w, rel=1e-9)


def test_simulated_load_noise_cache_stays_small():
    t = [100.0]
    load = SimulatedLoad(clock=lambda: t[0])
    # Integrate a minute of noise, window after window, as the simulated chip does.
    for _ in range(600):
        load.charge_c(t[0], t[0] + 0.1)
        t[0] += 0.1
    chunk_bytes = sum(a.nbytes for c in load._chunks.values() for a in c)
    assert len(load._chunks) <= 3 and chunk_bytes <= 3 * 3 * 4097 * 8


def test_the_daemons_simulated_load_keeps_a_short_history():
    meter = PowerMeter(PowerSection(monitor="sim", rate_hz=200.0))
    load = meter.load
    assert load is not None and load.max_history == SIM_HISTORY
    for _ in range(3 * SIM_HISTORY):
        with meter.busy():
            pass
    assert len(load._times) <= SIM_HISTORY


_BIG_PARENT = r"""
import subprocess, sys
ballast = bytearray(300 * 1024 * 1024)
ballast[:: 4096] = b"x" * len(ballast[:: 4096])  # touch every page: 300 MB resident
sys.exit(subprocess.call(sys.argv[1:]))
"""


def test_peak_rss_in_the_summary_is_the_daemons_own(head, tmp_path, free_port):
    # A daemon started by a big parent (a benchmark that imported torch) used to report the
    # parent's peak: ru_maxrss is carried over fork and exec.
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    try:
        cfg = write_config(tmp_path / "d.toml", head[0], port)
        summary = tmp_path / "s.json"
        daemon = [sys.executable, "-m", "device.cli", "--config", str(cfg), "--frames", "5"]
        rc = subprocess.call(
            [sys.executable, "-c", _BIG_PARENT, *daemon, "--summary", str(summary)],
            cwd=ROOT,
            timeout=120,
        )
        assert rc == 0
    finally:
        peer.kill()
    peak = json.loads(summary.read_text())["peak_rss_mb"]
    assert 20 < peak < 250, peak


def test_power_ring_stores_each_value_once_and_reads_across_the_wrap():
    from hardware.power import PowerSampler
    from hardware.powersample import PowerSample

    class Never:
        def read(self) -> PowerSample:
            raise AssertionError("not started")

    cap = 8
    s = PowerSampler(Never(), rate_hz=100.0, capacity=cap, adapt_reader=False)
    per_sample = sum(a.nbytes for a in s._buf.values()) + s._flags.nbytes
    assert per_sample == cap * (2 * 8 + 5 * 8 + 1)  # was cap * 2 * (6 * 8 + 1)

    def store(k: int) -> None:
        s._store(float(k), PowerSample(5.0, 0.001 * k, 0.01 * k, float(k), float(k) + 0.5))

    for k in range(5):
        store(k)
    seq, cols, lost = s.since(0)
    assert (seq, lost) == (5, 0) and cols["power_w"].tolist() == [0, 1, 2, 3, 4]
    for k in range(5, 13):  # wraps: physical slots 5, 6, 7, 0, 1, ...
        store(k)
    seq, cols, lost = s.since(seq)
    assert (seq, lost) == (13, 0) and cols["power_w"].tolist() == list(range(5, 13))
    assert cols["timestamp"].tolist() == [k + 0.5 for k in range(5, 13)]
    a = s.arrays(6.0, 11.0)  # a window whose physical slots wrap around the end
    assert a["t"].tolist() == [6, 7, 8, 9, 10, 11] and a["power_w"].tolist() == a["t"].tolist()
    assert s.energy_j(6.0, 11.0) == pytest.approx(sum((k + k + 1) / 2 for k in range(6, 11)))
    assert [x.power_w for x in s.samples()] == list(range(5, 13))
    assert s.latest().power_w == 12.0


@pytest.mark.parametrize("n", [0, 1, 5, 8, 9, 30])
def test_float_history_keeps_the_last_values_like_a_bounded_deque(n):
    from collections import deque

    import numpy as np

    from device.history import FloatHistory

    h, d = FloatHistory(8), deque(maxlen=8)
    for x in np.random.default_rng(n).normal(size=n):
        h.append(float(x))
        d.append(float(x))
    assert list(h) == list(d) and len(h) == len(d) and bool(h) == bool(d)
    assert h._buf.nbytes == 8 * 8  # 8 bytes a value, whatever was appended
