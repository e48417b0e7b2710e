"""splitfit-train train end to end on the synthetic set (results are synthetic, not accuracy claims)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training.cli import main  # noqa: E402

ARGS = [
    "train",
    "--data",
    "synthetic",
    "--limit-train",
    "128",
    "--limit-val",
    "32",
    "--batch-size",
    "32",
    "--after",
    "rb1",
    "--channels",
    "2",
    "--stride",
    "2",
    "--codec",
    "jpeg",
    "--quality",
    "30",
    "--no-progress",
    "--threads",
    "1",
]


def test_train_writes_artifacts_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*ARGS, "--epochs", "1", "--out", str(out)]) == 0
    for name in (
        "checkpoint.pt",
        "metrics.json",
        "curves.png",
        "head.pt",
        "head.pt.json",
        "tail.pt",
        "tail.json",
    ):
        assert (out / name).is_file(), name
    first = json.loads((out / "metrics.json").read_text())
    assert len(first["history"]) == 1 and first["data"]["synthetic"] is True
    assert first["split"]["bottleneck_chw"] == [2, 8, 8]  # 32 px, stride-2 stem, s=2
    assert main([*ARGS, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    second = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]  # epoch 1 came from the checkpoint
    assert second["model_id"] != first["model_id"]  # trained further: new weights, new id
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 2
    # resuming with a different split is refused rather than mixing runs
    other = [a if a != "rb1" else "rb2" for a in ARGS]
    assert main([*other, "--epochs", "3", "--out", str(out), "--resume"]) == 2


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli",
            "train",
            "--fashion-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3  # wire.exitcodes.BAD_INPUT: the dataset is not there
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "make data" in lines[0] and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli",
            "train",
            "--data",
            "synthetic",
            "--codec-param",
            "qualty=5",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "qualty" in proc.stderr and "Traceback" not in proc.stderr
