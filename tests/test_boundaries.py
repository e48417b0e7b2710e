"""Package boundaries, checked two ways.

Statically, by import-linter: the contracts in ``pyproject.toml`` (``[tool.importlinter]``) —
wire below hardware below device, device and server independent, the board side never
importing the workstation packages nor torch/tensorflow — counting imports inside functions.
Each contract is run on the project, and on a small tree that breaks it, so none is vacuous.

At run time, in a fresh interpreter (this test process may already have torch loaded by
other tests): every module of the board packages is imported, not only ``__init__``, and no
heavy framework may appear in ``sys.modules`` — this also catches a third-party library that
drags one in, which a static graph of our own code cannot see.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
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


# --------------------------------------------------------------------------- import-linter

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PYPROJECT_TEXT = (ROOT / "pyproject.toml").read_text()
ROOT_PACKAGES = ("wire", "hardware", "device", "server", "converter", "training", "benchmarks")


def _importlinter_section(text: str) -> str:
    """The ``[tool.importlinter]`` tables of a pyproject, verbatim (the contracts under test)."""
    lines, keep = [], False
    for line in text.splitlines():
        if line.startswith("["):
            keep = line.strip("[] ").startswith("tool.importlinter")
        if keep:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _contract_ids() -> list[str]:
    config = tomllib.loads(_importlinter_section(PYPROJECT_TEXT))["tool"]["importlinter"]
    return [c["id"] for c in config["contracts"]]


def _lint_imports(cwd: Path, contract: str) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip(f"import-linter is not installed ({LINT_IMPORTS}); it is in the dev extra")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", "--contract", contract],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_project_declares_the_contracts() -> None:
    assert sorted(_contract_ids()) == sorted(_VIOLATIONS)


@pytest.mark.parametrize("contract", _contract_ids())
def test_import_contract_is_kept(contract: str) -> None:
    proc = _lint_imports(ROOT, contract)
    assert proc.returncode == 0, f"contract {contract!r} broken:\n{proc.stdout}\n{proc.stderr}"
    assert "1 kept, 0 broken" in proc.stdout, proc.stdout


# One violation per contract, hidden where a line-based check would miss it (inside a
# function, behind a relative import), and the import the report must name.
_VIOLATIONS: dict[str, tuple[dict[str, str], str]] = {
    "board-layers": (
        {"hardware/leak.py": "def f():\n    from device import daemon\n"},
        "hardware.leak -> device.daemon",
    ),
    "device-server-independent": (
        {"server/leak.py": "import device.daemon\n"},
        "server.leak -> device.daemon",
    ),
    "board-no-workstation-packages": (
        {
            "wire/leak.py": "from . import helper\n",
            "wire/helper.py": "def f():\n    import training.models as m\n",
        },
        "wire.helper -> training.models",
    ),
    "board-no-frameworks": (
        {"device/leak.py": "def load():\n    import torch.nn as nn\n"},
        "device.leak -> torch",
    ),
}


@pytest.mark.parametrize("contract", sorted(_VIOLATIONS))
def test_import_contract_can_fail(tmp_path: Path, contract: str) -> None:
    """The project's own contracts, run on a small tree that breaks exactly this one."""
    for package in ROOT_PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "device" / "daemon.py").write_text("")
    (tmp_path / "training" / "models.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(_importlinter_section(PYPROJECT_TEXT))
    clean = _lint_imports(tmp_path, contract)
    assert clean.returncode == 0, f"the clean tree already breaks it:\n{clean.stdout}"
    files, offender = _VIOLATIONS[contract]
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    proc = _lint_imports(tmp_path, contract)
    assert proc.returncode != 0, f"{contract!r} not broken by {files}"
    assert "0 kept, 1 broken" in proc.stdout, proc.stdout
    assert offender in proc.stdout, f"the report does not name {offender}:\n{proc.stdout}"
