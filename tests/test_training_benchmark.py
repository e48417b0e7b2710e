"""The accuracy-vs-bytes benchmark runs end to end (tiny settings; the committed numbers come
from the full default run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from training.data.fashion_mnist import DatasetMissing, load_arrays


@pytest.mark.slow
def test_accuracy_vs_bytes_small_run_writes_json_md_png(tmp_path: Path) -> None:
    try:
        load_arrays("test")
    except DatasetMissing:
        pytest.skip("Fashion-MNIST not installed (make data)")
    from benchmarks.accuracy_vs_bytes import main

    rc = main(
        [
            "--train-limit",
            "512",
            "--test-limit",
            "256",
            "--baseline-epochs",
            "1",
            "--plain-epochs",
            "1",
            "--aware-epochs",
            "1",
            "--qualities",
            "5",
            "90",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert rc == 0
    result = json.loads((tmp_path / "accuracy_vs_bytes.json").read_text())
    assert [r["quality"] for r in result["rows"]] == [5, 90]
    q5, q90 = result["rows"]
    # real JPEG payloads: more quality, more bytes
    assert q90["naive"]["bytes_per_frame"] > q5["naive"]["bytes_per_frame"] > 0
    assert result["split"]["bottleneck_chw"] == [4, 14, 14]
    assert (tmp_path / "accuracy_vs_bytes.png").stat().st_size > 1000
    assert "| 5 |" in (tmp_path / "accuracy_vs_bytes.md").read_text()
