"""Crash-safe power log: format, segments, rotation, fsync cadence, and the ``power-log`` CLI
(including a ``record --sim`` process killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.waiting import wait_until

from hardware import powerlog
from hardware.powerlog import (
    PowerLogError,
    PowerLogWriter,
    append_mark,
    read_power_log,
    summarize,
)
from hardware.powerlog_cli import main

ROOT = Path(__file__).resolve().parents[1]
POWER_LOG = [sys.executable, "-m", "hardware.powerlog_cli"]


def constant_log(path: Path, watts: float = 2.0, n: int = 11, mark_at: float | None = 4.0):
    """Samples at t = 0..n-1 s with constant power; optional mark."""
    with PowerLogWriter(path, {"test": True}) as w:
        for k in range(n):
            if mark_at is not None and k == mark_at:
                w.mark("b", t=float(k))
            w.write_sample(float(k), 5.0, 0.001, watts / 5.0, watts, 0)
    return path


def test_roundtrip_and_segments_hand_computed(tmp_path: Path) -> None:
    log = read_power_log(constant_log(tmp_path / "p.csv"))
    assert len(log) == 11 and log.bad_lines == 0 and not log.torn_tail
    assert log.metas[0]["test"] is True
    total, segs = summarize(log)
    # 2 W for 10 s = 20 J, split by the mark at t=4 into 8 J and 12 J
    assert [(s.name, s.t0, s.t1) for s in segs] == [("(start)", 0.0, 4.0), ("b", 4.0, 10.0)]
    assert [s.energy_j for s in segs] == pytest.approx([8.0, 12.0])
    assert [s.samples for s in segs] == [4, 7]
    assert total.energy_j == pytest.approx(20.0)
    assert total.duration_s == pytest.approx(10.0)
    assert total.mean_power_w == pytest.approx(2.0) and total.peak_power_w == pytest.approx(2.0)


def test_torn_tail_and_garbage_are_tolerated(tmp_path: Path) -> None:
    p = constant_log(tmp_path / "p.csv", mark_at=None)
    with p.open("a") as fh:
        fh.write(
            "not,a,sample\n# mark {broken json\nx,y,z,1,2,3\n12.0,5.0,0.001,0.4,nan,0\n"
            "12.0,5.0,0.001,0.4,2.0,0\n13.0,5.0,0.0"
        )
    log = read_power_log(p)
    assert len(log) == 12  # the complete line after the garbage counts, the torn one not
    assert log.bad_lines == 4 and log.torn_tail
    assert log.t[-1] == 12.0 and np.all(np.isfinite(log.power_w))


def test_gaps_overflow_and_marks_from_another_process(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    with PowerLogWriter(p) as w:
        w.write_sample(1.0, 5.0, 0.0, 0.1, 0.5, 0)
        w.gap(1.5, "INA226TransientError: NACK")
        w.gap(1.6, "INA226TransientError: NACK", count=3, t_last=1.65)
        w.write_sample(2.0, 5.0, 0.0, 0.1, 0.5, 1)
    append_mark(p, "external", t=1.7)
    log = read_power_log(p)
    total, segs = summarize(log)
    assert total.gaps == 4 and total.overflow == 1
    assert log.gaps[1]["count"] == 3 and log.gaps[1]["t_last"] == 1.65
    assert [s.name for s in segs] == ["(start)", "external"]
    with pytest.raises(PowerLogError, match="does not exist"):
        append_mark(tmp_path / "nope.csv", "x")


def test_rotation_keeps_every_sample_and_self_describing_parts(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    n = 3000
    t = np.arange(n) * 0.01
    with PowerLogWriter(p, max_bytes=16384, backups=20) as w:
        for k in range(0, n, 100):
            sl = slice(k, k + 100)
            w.write_arrays(
                {
                    "t": t[sl],
                    "bus_v": np.full(100, 5.0),
                    "shunt_v": np.zeros(100),
                    "current_a": np.full(100, 0.2),
                    "power_w": np.full(100, 1.0),
                    "flags": np.zeros(100, int),
                }
            )
        rotations = w.rotations
    parts = sorted(tmp_path.glob("p.csv.*"), key=lambda q: -int(q.suffix[1:]))
    assert rotations >= 5 and len(parts) == rotations
    for q in [*parts, p]:
        assert q.stat().st_size <= 16384
        assert q.read_text().startswith("# splitfit-power-log/1\n# meta ")
    log = read_power_log(*parts, p)
    assert len(log) == n and log.sessions == [0]  # rotation continues the session
    total, _ = summarize(log)
    assert total.energy_j == pytest.approx((n - 1) * 0.01)


def test_backups_limit_drops_oldest(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    with PowerLogWriter(p, max_bytes=4096, backups=2) as w:
        for k in range(1000):
            w.write_sample(float(k), 5.0, 0.0, 0.1, 0.5)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["p.csv", "p.csv.1", "p.csv.2"]


def test_reopening_starts_a_new_session_not_integrated_across(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    constant_log(p, watts=2.0, mark_at=None)  # t 0..10
    with PowerLogWriter(p) as w:  # "after a reboot": the clock restarted
        for k in range(3):
            w.write_sample(float(k), 5.0, 0.0, 0.2, 1.0)
    log = read_power_log(p)
    assert log.sessions == [0, 1]
    total, segs = summarize(log)
    assert total.energy_j == pytest.approx(20.0 + 2.0)
    assert [s.session for s in segs] == [0, 1]


def test_fsync_cadence_follows_the_interval(tmp_path: Path, monkeypatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(powerlog.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    now = [0.0]
    w = PowerLogWriter(tmp_path / "p.csv", fsync_interval_s=1.0, clock=lambda: now[0])
    base = len(calls)  # the header is synced once
    for k in range(50):  # 5 s of writes every 0.1 s
        now[0] = k * 0.1
        w.write_sample(now[0], 5.0, 0.0, 0.1, 0.5)
    assert len(calls) - base in (4, 5)
    w.close()


def test_not_a_power_log(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("hello\n")
    with pytest.raises(PowerLogError, match="not a splitfit-power-log/1"):
        read_power_log(p)
    with pytest.raises(PowerLogError, match="directory"):
        PowerLogWriter(tmp_path / "missing" / "p.csv")


# ----------------------------------------------------------------- CLI


def test_cli_summary_show_plot(tmp_path: Path, capsys) -> None:
    p = constant_log(tmp_path / "p.csv")
    assert main(["summary", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["energy_j"] == pytest.approx(20.0)
    assert [s["name"] for s in out["segments"]] == ["(start)", "b"]
    assert main(["summary", str(p)]) == 0
    text = capsys.readouterr().out
    assert "(all)" in text and "20.0000" in text
    assert main(["show", str(p), "-n", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[-1].split()[0] == "10.000000"
    png = tmp_path / "trace.png"
    assert main(["plot", str(p), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    # exit statuses from wire.exitcodes: 1 no such bus (run-time), 2 options the chip cannot
    # honour (usage), 3 a log file that is not there (bad input)
    for code, args in zip(
        (1, 2, 3),
        (
            ["record", "--bus", "97", "--out", str(tmp_path / "x.csv")],
            [
                "record",
                "--sim",
                "--shunt-ohms",
                "0.1",
                "--max-current",
                "3.2",
                "--out",
                str(tmp_path / "y.csv"),
            ],
            ["summary", str(tmp_path / "none.csv")],
        ),
        strict=True,
    ):
        proc = subprocess.run(
            [*POWER_LOG, *args], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert proc.returncode == code, proc
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("power-log: error: ")
        assert "Traceback" not in proc.stderr
    assert (
        "/dev/i2c-97 does not exist"
        in subprocess.run(
            [*POWER_LOG, "record", "--bus", "97", "--out", str(tmp_path / "x.csv")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        ).stderr
    )
    assert not (tmp_path / "x.csv").exists()  # no log file for a recorder that never started


def _lines(path: Path) -> list[str]:
    """The complete lines written so far (a running recorder's last one may be partial)."""
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1].splitlines()


def _wait_for_samples(path: Path, n: int, timeout: float = 30.0) -> None:
    wait_until(lambda: len(_lines(path)) > n, timeout, interval=0.05, what=f"{n} lines in {path}")


def _sleeping(pid: int) -> bool:
    """The process is in interruptible sleep (state S in /proc/PID/stat), not running."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "S"


def test_sigkill_during_record_leaves_a_parseable_complete_log(tmp_path: Path) -> None:
    out = tmp_path / "kill.csv"
    fsync_s = 0.2
    proc = subprocess.Popen(
        [
            *POWER_LOG,
            "record",
            "--sim",
            "--out",
            str(out),
            "--rate",
            "500",
            "--fsync-interval",
            str(fsync_s),
            "--mark-every",
            "0.3",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_samples(out, 300)
        # two marks (every 0.3 s) written: two segments to summarize after the kill
        wait_until(lambda: sum(ln.startswith("# mark") for ln in _lines(out)) >= 2, 30)
        t_kill = time.monotonic()  # CLOCK_MONOTONIC is system-wide: same axis as the log
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    log = read_power_log(out)
    assert log.bad_lines == 0
    assert len(log) > 200
    assert np.all(np.diff(log.t) > 0)
    # everything older than the fsync interval (plus the drain period and the ADC's age)
    # is in the file
    assert log.t[-1] >= t_kill - (fsync_s + 0.1 + 0.05)
    assert len(log.marks) >= 2
    total, segs = summarize(log)
    assert 1.0 < total.mean_power_w < 4.0  # between the sim's idle 1.5 W and busy 3.5 W
    assert [s.name for s in segs if s.name != "(start)"][:2] == ["segment-0", "segment-1"]


def test_sigterm_stops_record_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "term.csv"
    proc = subprocess.Popen(
        [*POWER_LOG, "record", "--sim", "--out", str(out), "--rate", "200"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_samples(out, 50)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in err.strip().splitlines()]
    assert events[0]["event"] == "start" and events[-1]["event"] == "stop"
    assert events[-1]["reason"] == "SIGTERM"
    log = read_power_log(out)
    assert not log.torn_tail and len(log) == events[-1]["written"]


def test_show_follow_prints_new_lines_across_rotation(tmp_path: Path) -> None:
    p = tmp_path / "f.csv"
    w = PowerLogWriter(p, max_bytes=4096, backups=3)
    w.write_sample(0.5, 5.0, 0.0, 0.1, 0.5)
    proc = subprocess.Popen(
        [*POWER_LOG, "show", str(p), "--follow", "-n", "1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split()[0] == "0.500000"  # the existing last line
        # It has read the file to the end and sleeps between polls: the rotation below
        # happens while it is not looking, as a real one would.
        wait_until(lambda: _sleeping(proc.pid), 10, what="the follower idle at EOF")
        w.mark("phase-2", t=0.9)
        for k in range(1, 120):  # ~5 KB: crosses the 4 KB rotation
            w.write_sample(float(k), 5.0, 0.0, 0.1, 0.5)
        w.close()
        assert w.rotations >= 1
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "119.000000" not in (seen[-1] if seen else ""):
            seen.append(proc.stdout.readline())
        assert any("mark" in s and "phase-2" in s for s in seen)
        assert seen[-1].split()[0] == "119.000000"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_record_survives_a_flaky_bus_and_logs_coalesced_gaps(tmp_path: Path) -> None:
    out = tmp_path / "flaky.csv"
    proc = subprocess.run(
        [
            *POWER_LOG,
            "record",
            "--sim",
            "--sim-error-rate",
            "0.4",
            "--out",
            str(out),
            "--duration",
            "1.0",
            "--rate",
            "300",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    stop = json.loads(proc.stderr.strip().splitlines()[-1])
    assert stop["event"] == "stop" and stop["gaps"] > 0 and stop["errors"] > stop["gaps"]
    log = read_power_log(out)
    total, _ = summarize(log)
    assert total.gaps == stop["gaps"]  # every lost sample is accounted for in the file
    assert len(log.gaps) <= total.gaps
    assert len(log) == stop["written"] > 50
