"""Atomic writes: all or nothing, readable mode, no temp files left behind on failure."""

from __future__ import annotations

import json
import os
import stat

import pytest

from wire.atomicfile import write_atomic, write_json_atomic, write_text_atomic


def test_replaces_whole_file_with_umask_mode(tmp_path):
    target = tmp_path / "sub" / "out.json"
    old = os.umask(0o022)
    try:
        write_json_atomic(target, {"a": 1})
        write_json_atomic(target, {"b": [1, 2]}, sort_keys=True)
    finally:
        os.umask(old)
    assert json.loads(target.read_text()) == {"b": [1, 2]}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "plot.png"
    write_text_atomic(target, "old")

    def boom(tmp):
        assert tmp.suffix == ".png"  # writers that pick a format from the suffix still can
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
