"""Per-frame JSONL metrics: rotation bounds disk use; rolling summary numbers."""

from __future__ import annotations

import json

import pytest

from device.metrics import FrameRecord, MetricsWriter, Rolling


def test_rotation_keeps_at_most_backups_plus_one_files(tmp_path):
    path = tmp_path / "m.jsonl"
    w = MetricsWriter(path, max_bytes=2000, backups=2)
    for i in range(200):
        w.write(FrameRecord(seq=i, head="h", capture_ts=0.0, capture_mono=0.0).to_json())
    w.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["m.jsonl", "m.jsonl.1", "m.jsonl.2"]
    assert w.rotations > 2
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 2000
        rows = [json.loads(ln) for ln in p.read_text().splitlines()]
        assert all(set(r) >= {"seq", "head_ms", "bytes", "energy_frame_mj", "top1"} for r in rows)
    # The newest lines are in the live file, the sequence continues across the rotation.
    last = [json.loads(ln)["seq"] for ln in path.read_text().splitlines()]
    assert last[-1] == 199 and last == list(range(last[0], 200))


def test_no_path_writes_nothing(tmp_path):
    w = MetricsWriter(None)
    w.write({"seq": 1})
    w.close()
    assert list(tmp_path.iterdir()) == []


def test_rolling_fps_and_percentiles():
    r = Rolling()
    for i in range(101):
        r.add(100.0 + i * 0.1, latency_ms=float(i))
    assert r.fps(now=110.0) == pytest.approx(101 / 10.0, rel=0.01)
    p50, p99 = r.percentiles()
    assert p50 == pytest.approx(50.0) and p99 == pytest.approx(99.0)
    assert Rolling().percentiles() == (None, None)
