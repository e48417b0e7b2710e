"""The board packages must stay lean: importing them may not pull torch or tensorflow.

Each check runs in a fresh interpreter, because this test process may already have torch
loaded by other tests. Every module under the package is imported, not only __init__, so a
heavy import buried in a submodule is caught too.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEAN_PACKAGES = ("wire", "hardware", "device")
HEAVY = ("torch", "tensorflow", "tf_keras", "keras", "jax", "onnx2tf")


def _modules_of(package: str) -> list[str]:
    pkg_dir = ROOT / package
    names = [package]
    for info in pkgutil.walk_packages([str(pkg_dir)], prefix=f"{package}."):
        names.append(info.name)
    return names


def _heavy_after_import(modules: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"import failed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", LEAN_PACKAGES)
def test_lean_package_imports_no_heavy_framework(package: str) -> None:
    loaded = _heavy_after_import(_modules_of(package))
    assert loaded == [], f"importing {package} pulled in {loaded}"


def test_the_check_itself_detects_a_heavy_import(tmp_path: Path) -> None:
    """Guard against a vacuous check: a module that imports torch must be reported."""
    pytest.importorskip("torch")
    pkg = tmp_path / "leaky"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "inner.py").write_text("import torch  # noqa: F401\n")
    code = (
        "import sys, json; sys.path.insert(0, %r)\n"
        "import leaky.inner\n"
        "print(json.dumps(sorted(m for m in %r if m in sys.modules)))\n"
    ) % (str(tmp_path), list(HEAVY))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch" in json.loads(proc.stdout.strip().splitlines()[-1])


def test_no_source_line_imports_heavy_frameworks() -> None:
    """A static check too: lazy imports inside functions would slip past the runtime check."""
    offenders = []
    for package in LEAN_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                stripped = line.strip()
                for heavy in ("torch", "tensorflow"):
                    if stripped.startswith((f"import {heavy}", f"from {heavy}")):
                        offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {stripped}")
    assert offenders == []
