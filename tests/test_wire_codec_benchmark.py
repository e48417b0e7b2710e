"""The codec benchmark runs end to end and records what it claims (a few rounds only)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import codecs as bench


def test_codec_benchmark_writes_consistent_results(tmp_path: Path) -> None:
    assert bench.main(["--rounds", "2", "--samples", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "codecs.json").read_text())
    md = (tmp_path / "codecs.md").read_text()
    rows = result["rows"]
    assert {tuple(r["shape"]) for r in rows} == set(bench.SHAPES)
    for r in rows:
        assert r["bytes_mean"] > 0 and r["encode_median_us"] > 0 and r["decode_median_us"] > 0
        if r["codec"] == "raw":  # raw size is arithmetic, not measured: check it exactly
            c, h, w = r["shape"]
            assert r["bytes_mean"] == -(-c * h * w * r["bits"] // 8)
        if r["codec"] in ("raw", "zstd", "png"):
            assert r["mae_codes"] == 0.0
        else:
            assert 0 < r["rmse_codes"] <= r["rmse_bound_codes"]
        assert r["label"] in md
    qualities = {r["params"]["quality"] for r in rows if r["codec"] == "jpeg" and r["bits"] == 8}
    assert qualities == {10, 20, 50, 90}
    assert result["verdicts"]["frame_header_bytes"] == 24
    assert (tmp_path / "codecs.png").stat().st_size > 1000


def test_codec_benchmark_rejects_bad_arguments(capsys) -> None:
    assert bench.main(["--rounds", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err
