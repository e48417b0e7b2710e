"""``python -m hardware.camera``: the bring-up check, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hardware.camera import CameraError
from hardware.camera.__main__ import parse_sets

ROOT = Path(__file__).resolve().parents[1]

try:
    import cv2  # noqa: F401

    NO_V4L2 = "no such V4L2 device /dev/video98"
except ImportError:  # opencv is an optional extra: then that is the error to expect
    NO_V4L2 = "OpenCV is not installed"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hardware.camera", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_synthetic_check_reports_rate_and_saves_the_frame(tmp_path: Path) -> None:
    snap = tmp_path / "snap.png"
    proc = _run(
        "synthetic", "--set", "width=64", "--set", "height=48", "--set", "fps=50",
        "--frames", "10", "--save", str(snap),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["frames"] == 10 and report["shape"] == [48, 64, 3]
    assert 20 <= report["fps"] <= 60
    saved = np.asarray(Image.open(snap))
    assert saved.shape == (48, 64, 3) and saved.std() > 5  # a picture, not a blank


def test_folder_check_reports_labels(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "cat" / "a.png")
    proc = _run("folder", "--set", f"path={tmp_path}", "--frames", "3")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["last_label"] == "cat"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["webcam"], "unknown camera source 'webcam'"),
        (["synthetic", "--set", "fsp=3"], "unknown parameter 'fsp'"),
        (["synthetic", "--set", "nonsense"], "--set expects key=value"),
        (["opencv", "--set", "device=/dev/video98"], NO_V4L2),
        (["folder", "--set", "path=/no/such/dir"], "/no/such/dir does not exist"),
    ],
)
def test_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    proc = _run(*args)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("camera check: ") and message in lines[-1]
    assert "Traceback" not in proc.stderr


def test_set_values_are_toml_typed() -> None:
    params = parse_sets(["fps=30", "loop=false", 'path="a b"', "device=/dev/video0", "r=[1, 2]"])
    assert params == {"fps": 30, "loop": False, "path": "a b", "device": "/dev/video0", "r": [1, 2]}
    with pytest.raises(CameraError, match="key=value"):
        parse_sets(["=3"])
