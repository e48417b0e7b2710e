"""The ImageNet rate–accuracy report: the ratio at equal top-1 and what it says about it.

The measurement itself needs the (uncommittable) ImageNet sample and trained splits; here
rows of a known shape go through the same verdict, Markdown and plot code, so a wrong
ratio, a missed target called met, or a codec-share row bending the curve would fail.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.rate_accuracy import verdict
from benchmarks.rate_accuracy_imagenet import (
    BASELINE,
    TOL,
    plot,
    summary_lines,
    with_bounds,
    write_markdown,
)


def _row(family: str, top1: float, nbytes: float, lam: float | None, codec: str = "zstd"):
    return {
        "family": family,
        "folder": "x",
        "split": "stage3",
        "channels": 32,
        "bits": 1 if lam is None else 2,
        "lambda": lam,
        "codec": codec,
        "model_id": "0" * 64,
        "bytes_mean": nbytes,
        "bytes_max": int(nbytes * 1.2),
        "top1": top1,
        "top5": min(1.0, top1 + 0.2),
        "top1_loss_pts": 100 * (0.845 - top1),
        "agreement": top1,
        "kl_nats": 1.0,
        "encode_ms_median": 0.5,
        "decode_ms_median": 0.7,
    }


def _results(rows):
    curve = [r for r in rows if r["family"] != "rate-trained + zstd"]
    return {
        "rows": rows,
        "verdict": with_bounds(verdict(curve, TOL), curve),
        "meta": {
            "n_heldout": 200,
            "teacher_top1": 0.845,
            "head": "int8",
            "loadavg_before": [3.0],
            "loadavg_after": [4.0],
            "note": "loaded",
        },
    }


def test_ratio_is_interpolated_baseline_bytes_over_the_points_and_missed_is_said(tmp_path):
    rows = [
        _row(BASELINE, 0.28, 500.0, None),
        _row(BASELINE, 0.57, 720.0, None),
        _row("rate-trained + rans", 0.425, 400.0, 0.004, "rans"),  # halfway in top-1
        _row("rate-trained + zstd", 0.425, 100.0, 0.004, "zstd"),  # coder-share row: aside
        _row("rate-trained + rans", 0.70, 1400.0, 0.001, "rans"),  # above every baseline
    ]
    res = _results(rows)
    pts = res["verdict"]["points"]
    assert len(pts) == 2  # the plain-zstd row of a rate model is not a curve point
    mid = next(p for p in pts if p["top1"] == 0.425)
    expected = (500.0 * 720.0) ** 0.5  # log-bytes interpolation, halfway
    assert mid["interpolated_baseline_bytes"] == pytest.approx(expected)
    assert mid["ratio"] == pytest.approx(expected / 400.0)
    above = next(p for p in pts if p["top1"] == 0.70)
    assert above["ratio"] is None  # outside the curve: no baseline reaches that top-1
    assert above["ratio_lower_bound"] == pytest.approx(720.0 / 1400.0)  # a bound, said so
    assert mid["ratio_lower_bound"] is None
    lines = summary_lines(res)
    assert f"{expected / 400.0:.2f}x" in lines[0] and "missed by" in lines[0]
    assert "best bound >= 0.51x" in lines[1] and "a bound only" in lines[1]
    assert lines[2].startswith("rans on these cuts") and "encode 0.50–0.50 ms" in lines[2]
    assert lines[2].endswith("met.")

    write_markdown(res, tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "above the curve" in md and ">= 0.51x (bound)" in md
    assert "Loaded shared 2-core machine" in md
    plot(res, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    json.dumps(res)  # the JSON result stays serialisable


def test_a_point_at_half_the_bytes_meets_the_target():
    rows = [
        _row(BASELINE, 0.28, 500.0, None),
        _row(BASELINE, 0.57, 720.0, None),
        _row("rate-trained + rans", 0.57, 350.0, 0.01, "rans"),
    ]
    lines = summary_lines(_results(rows))
    assert "target met." in lines[0] and "2.06x" in lines[0]


def test_from_json_rejudges_and_renders_without_measuring(tmp_path, capsys):
    from benchmarks.rate_accuracy_imagenet import main

    rows = [
        _row(BASELINE, 0.28, 500.0, None),
        _row(BASELINE, 0.57, 720.0, None),
        _row("rate-trained + rans", 0.57, 350.0, 0.01, "rans"),
    ]
    stale = {**_results(rows), "verdict": {"points": []}}  # an older code's verdict
    (tmp_path / "in.json").write_text(json.dumps(stale))
    assert main(["--from-json", str(tmp_path / "in.json"), "--out", str(tmp_path / "out")]) == 0
    out = json.loads((tmp_path / "out" / "rate_accuracy_imagenet.json").read_text())
    assert [p["ratio"] for p in out["verdict"]["points"]] == [pytest.approx(720.0 / 350.0)]
    assert "target met." in (tmp_path / "out" / "rate_accuracy_imagenet.md").read_text()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main(["--from-json", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and "bad.json" in capsys.readouterr().err
