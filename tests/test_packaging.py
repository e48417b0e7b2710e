"""Packaging promises: the device extra stays lean, torch is pinned, the board Pythons are admitted.

The board-side Python checks (3.9/3.10 metadata, aarch64 wheels, real old interpreters) are in
tests/test_py39.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support.tools import CONSOLE_SCRIPTS

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_torch_requirement_is_pinned() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    for name, reqs in extras.items():
        for req in reqs:
            if req.split("[")[0].split("=")[0].split(">")[0].strip() == "torch":
                assert req == "torch==2.13.0", f"extra {name!r} has unpinned {req!r}"


def test_console_scripts_are_declared() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    for name in CONSOLE_SCRIPTS:
        assert name in scripts


@pytest.mark.slow
def test_device_extra_resolves_without_torch_or_tensorflow(tmp_path: Path) -> None:
    """Ask pip what `pip install '.[device]'` would install into an empty environment."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            f"{ROOT}[device]",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = {
        item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]
    }
    assert "pyzmq" in installed and "numpy" in installed
    heavy = sorted(
        n for n in installed if n.startswith(("torch", "tensorflow", "tf-keras", "jax", "onnx"))
    )
    assert heavy == [], f"device extra would install {heavy}"
