"""hardware.rotation: the one size-based rotation both log writers use."""

from __future__ import annotations

from pathlib import Path

from device.metrics import MetricsWriter
from hardware import rotation
from hardware.powerlog import PowerLogWriter


def test_due_only_when_the_write_would_pass_the_limit() -> None:
    assert not rotation.due(90, 10, 100) and rotation.due(91, 10, 100)
    assert not rotation.due(0, 500, 100)  # an empty file takes one oversized record


def test_rotate_shifts_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "m.jsonl"
    for gen in range(4):
        log.write_text(f"gen{gen}")
        rotation.rotate(log, backups=2)
    assert not log.exists()
    assert (tmp_path / "m.jsonl.1").read_text() == "gen3"
    assert (tmp_path / "m.jsonl.2").read_text() == "gen2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl.1", "m.jsonl.2"]
    log.write_text("x")
    rotation.rotate(log, backups=0)
    assert not log.exists() and (tmp_path / "m.jsonl.1").read_text() == "gen3"


def test_both_writers_rotate_the_same_way(tmp_path: Path) -> None:
    m = MetricsWriter(tmp_path / "m.jsonl", max_bytes=200, backups=2)
    for i in range(40):
        m.write({"i": i, "pad": "x" * 20})
    m.close()
    p = PowerLogWriter(tmp_path / "p.csv", max_bytes=4096, backups=2, fsync_interval_s=0)
    for i in range(400):
        p.write_sample(float(i), 5.0, 0.01, 0.1, 0.5)
    p.close()
    for name in ("m.jsonl", "p.csv"):
        files = sorted(f.name for f in tmp_path.glob(f"{name}*"))
        assert files == [name, f"{name}.1", f"{name}.2"], files
    assert m.rotations > 2 and p.rotations > 2
    assert all((tmp_path / f"m.jsonl{s}").stat().st_size <= 200 for s in ("", ".1", ".2"))
    assert all((tmp_path / f"p.csv{s}").stat().st_size <= 4096 for s in ("", ".1", ".2"))
