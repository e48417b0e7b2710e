"""The board side (wire, hardware, device) runs on the Pythons boards ship: 3.9, 3.10, 3.11+.

Raspberry Pi OS bullseye ships 3.9, JetPack 6 (Ubuntu 22.04) ships 3.10, bookworm 3.11. Three
checks, cheapest first:

- static: vermin finds the minimum version of every board module (stdlib modules and members,
  keyword arguments such as ``zip(strict=)``, ``dataclass(slots=)``, ``match``…), and an ``ast``
  pass finds ``X | Y`` evaluated at run time (``isinstance(x, int | float)``, aliases), which
  vermin cannot tell apart from annotations made lazy by ``from __future__ import annotations``;
- resolution (slow, needs the package index): ``.[device]`` resolves to binary wheels only for
  ``manylinux_2_27_aarch64`` on 3.9, 3.10 and 3.11 — no source build on a board;
- real interpreters (slow): a venv on pyenv's 3.9 and 3.10 installs ``.[device]`` from the index
  (no torch) and runs a device-side smoke: every board module imported, the example
  ``device.toml`` parsed, the INA226 driver sampling the register simulator, the wire codec and
  protocol through a real ZeroMQ socket, the TFLite runtime importable.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOARD_PACKAGES = ("wire", "hardware", "device")
ALL_PACKAGES = ("wire", "hardware", "device", "server", "converter", "training", "benchmarks")
VERMIN = Path(sys.executable).with_name("vermin")
PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"

# --------------------------------------------------------------------------- static: vermin


def _vermin(*paths: Path | str) -> subprocess.CompletedProcess[str]:
    if not VERMIN.exists():
        pytest.skip(f"vermin is not installed ({VERMIN}); it is in the dev extra")
    return subprocess.run(
        [str(VERMIN), "--no-tips", "-t=3.9-", "--violations", "-vvv", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_board_packages_need_no_python_newer_than_3_9() -> None:
    proc = _vermin(*(ROOT / p for p in BOARD_PACKAGES))
    assert proc.returncode == 0, f"3.10+ constructs on the board side:\n{proc.stdout}"
    assert "Analyzing" in proc.stdout  # it really scanned files


@pytest.mark.parametrize(
    ("source", "construct"),
    [
        ("import tomllib\n", "tomllib"),
        ("from enum import StrEnum\n", "StrEnum"),
        ("def f(a, b):\n    return list(zip(a, b, strict=True))\n", "strict"),
        (
            "from dataclasses import dataclass\n@dataclass(slots=True)\nclass A:\n    x: int\n",
            "slots",
        ),
        ("def f(x):\n    match x:\n        case 1:\n            return 2\n", "match"),
        ("from typing import TypeAlias\n", "TypeAlias"),
    ],
)
def test_vermin_check_fails_on_a_newer_construct(
    tmp_path: Path, source: str, construct: str
) -> None:
    (tmp_path / "mod.py").write_text("from __future__ import annotations\n" + source)
    proc = _vermin(tmp_path)
    assert proc.returncode != 0, f"vermin accepted {construct}:\n{proc.stdout}"
    assert construct in proc.stdout


# --------------------------------------------------------------------------- static: ast

_TYPE_NAMES = frozenset(
    {"int", "float", "complex", "str", "bytes", "bytearray", "memoryview", "bool", "list",
     "dict", "tuple", "set", "frozenset", "type", "object", "Path"}
)  # fmt: skip


def _annotation_node_ids(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        annotations: list[ast.expr] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None and arg.annotation is not None:
                    annotations.append(arg.annotation)
            if node.returns is not None:
                annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for ann in annotations:
            ids.update(id(sub) for sub in ast.walk(ann))
    return ids


def _typeish(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Name):  # builtins, or a class by its CapWords name (not FLAG_X)
        return node.id in _TYPE_NAMES or (node.id[:1].isupper() and not node.id.isupper())
    if isinstance(node, ast.Attribute):  # np.integer, typing.Any; not flags like os.R_OK
        attr = node.attr
        return (attr[:1].isupper() and not attr.isupper()) or attr in {"integer", "floating"}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _typeish(node.left) or _typeish(node.right)
    return False


def runtime_unions(source: str) -> list[str]:
    """``X | Y`` of types that Python 3.9 would evaluate (and fail on): outside annotations,
    or anywhere in a module without ``from __future__ import annotations``."""
    tree = ast.parse(source)
    lazy = any(
        isinstance(n, ast.ImportFrom)
        and n.module == "__future__"
        and any(a.name == "annotations" for a in n.names)
        for n in tree.body
    )
    skip = _annotation_node_ids(tree) if lazy else set()
    for node in ast.walk(tree):  # report a chain A | B | C once, at its top
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            skip.update({id(node.left), id(node.right)})
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and id(node) not in skip
            and (_typeish(node.left) or _typeish(node.right))
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_board_packages_evaluate_no_type_union_at_run_time() -> None:
    offenders = []
    for package in BOARD_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            offenders += [f"{path.relative_to(ROOT)} {u}" for u in runtime_unions(path.read_text())]
    assert offenders == [], "X | Y evaluated at run time needs 3.10 (use a tuple):\n" + "\n".join(
        offenders
    )


@pytest.mark.parametrize(
    ("source", "bad"),
    [
        ("from __future__ import annotations\ndef f(x: int | None) -> str | None: ...\n", 0),
        ("from __future__ import annotations\ny: dict[str, int | None] = {}\n", 0),
        ("from __future__ import annotations\nFLAGS = 1 | 2\nA = B = 4\nC = A | B\n", 0),
        ("from __future__ import annotations\nimport os\nM = os.R_OK | os.X_OK\n", 0),
        (
            "from __future__ import annotations\ndef f(x):\n    return isinstance(x, int | float)\n",
            1,
        ),
        ("from __future__ import annotations\nimport numpy as np\nOK = int | np.integer\n", 1),
        ("def f(x: int | None) -> None: ...\n", 1),  # no lazy annotations: evaluated on 3.9
        ("Number = float | None\n", 1),
        (
            "from __future__ import annotations\nclass Alpha: ...\nclass Beta: ...\nAB = Alpha | Beta\n",
            1,
        ),
    ],
)
def test_runtime_union_check_tells_annotations_from_evaluated_unions(source: str, bad: int) -> None:
    assert len(runtime_unions(source)) == bad, runtime_unions(source)


# --------------------------------------------------------------------------- metadata


def _pyproject() -> dict:
    import tomllib  # the test side runs on the workstation Python

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_metadata_admits_the_board_pythons_and_brings_tomli_below_3_11() -> None:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    project = _pyproject()["project"]
    spec = SpecifierSet(project["requires-python"])
    for version in ("3.9.2", "3.10.12", "3.11.2", "3.12.0"):
        assert version in spec, f"requires-python {spec} refuses {version}"
    assert "3.8.18" not in spec
    tomli = [Requirement(r) for r in project["dependencies"] if r.startswith("tomli")]
    assert len(tomli) == 1 and tomli[0].marker is not None
    for version, wanted in (("3.9", True), ("3.10", True), ("3.11", False), ("3.13", False)):
        env = {"python_version": version, "python_full_version": f"{version}.0"}
        assert tomli[0].marker.evaluate(env) is wanted
    assert Marker("python_version < '3.11'").evaluate({"python_version": "3.9"})


# --------------------------------------------------------------------------- aarch64 wheels

BOARD_PLATFORMS = [f"manylinux_2_{m}_aarch64" for m in range(27, 16, -1)] + [
    "manylinux2014_aarch64"
]  # glibc 2.27 or newer: every manylinux tag up to 2_27 installs there


def _index_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=15) as r:
            return r.status == 200
    except OSError:
        return False


def _copy_source(dst: Path) -> Path:
    """A snapshot of the project, so pip's build never writes into the shared checkout."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    for pkg in ALL_PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _interpreter(version: str) -> Path | None:
    """pyenv's interpreter for ``version`` ("3.9"), or this one when it is that version."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)
    for found in sorted(PYENV.glob(f"{version}.*/bin/python{version}")):
        return found
    return None


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("version", ["3.9", "3.10", "3.11"])
def test_device_extra_resolves_to_aarch64_wheels(tmp_path: Path, version: str) -> None:
    """``pip install '.[device]'`` for a glibc-2.27 aarch64 board, binary wheels only.

    pip evaluates environment markers against the interpreter it runs on, not against
    ``--python-version``, so the resolver runs on that Python when pyenv has it (then the
    ``tomli`` marker is checked too); otherwise this interpreter resolves the wheels.
    """
    if not _index_reachable():
        pytest.skip("the package index (pypi.org) is unreachable from here")
    python = _interpreter(version) or Path(sys.executable)
    src = _copy_source(tmp_path / "src")
    report = tmp_path / "report.json"
    platforms = [arg for p in BOARD_PLATFORMS for arg in ("--platform", p)]
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--only-binary=:all:", *platforms, "--python-version", version,
         "--implementation", "cp", "--target", str(tmp_path / "target"),
         "--report", str(report), f"{src}[device]"],
        capture_output=True, text=True, timeout=1100,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"no aarch64 wheel set for Python {version}:\n{proc.stderr[-3000:]}"
    )
    items = json.loads(report.read_text())["install"]
    wheels = {}
    for item in items:
        name = item["metadata"]["name"].lower().replace("_", "-")
        if name == "splitfit":
            continue
        wheels[name] = item["download_info"]["url"].rsplit("/", 1)[-1]
    for name in ("numpy", "pillow", "pyzmq", "smbus2", "gpiozero", "zstandard", "ai-edge-litert"):
        assert name in wheels, f"{name} missing from the Python {version} resolution"
    tag = f"cp{version.replace('.', '')}"
    for name, filename in wheels.items():
        assert filename.endswith(".whl"), f"{name}: {filename} is not a wheel"
        parts = filename[:-4].split("-")
        py_tags, plat_tags = parts[-3].split("."), parts[-1].split(".")
        assert "any" in plat_tags or any(p in BOARD_PLATFORMS for p in plat_tags), filename
        assert "any" in plat_tags or tag in py_tags or "abi3" in parts[-2], filename
    heavy = sorted(n for n in wheels if n.startswith(("torch", "tensorflow", "jax", "onnx")))
    assert heavy == [], f"the device extra would install {heavy}"
    if python != Path(sys.executable) or version == "3.11":
        below_311 = tuple(map(int, version.split("."))) < (3, 11)
        assert ("tomli" in wheels) is below_311, sorted(wheels)


# --------------------------------------------------------------------------- real 3.9 / 3.10

SMOKE = r"""
import importlib, json, pkgutil, sys, zmq
from pathlib import Path
import numpy as np

import device, hardware, wire
names = []
for pkg in (wire, hardware, device):
    names.append(pkg.__name__)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
        names.append(info.name)
skipped = {}
for name in names:
    if name.endswith("__main__"):
        continue
    try:
        importlib.import_module(name)
    except ImportError as exc:  # an optional camera backend (picamera2, cv2) is absent
        if exc.name not in ("picamera2", "cv2", "libcamera"):
            raise
        skipped[name] = exc.name

from device.config import load_config
cfg = load_config(sys.argv[1])

from hardware.monitor import open_power_monitor
from hardware.power import PowerSampler
from hardware.sim import simulated_load_of
reader = open_power_monitor("sim", idle_w=1.5, busy_w=3.5, noise_w=0.0, seed=1)
with PowerSampler(reader, rate_hz=200) as sampler:
    load = simulated_load_of(reader)
    import time
    time.sleep(0.3)
    t0 = time.monotonic(); time.sleep(0.2); t1 = time.monotonic()
    sampler.wait_until(t1, timeout=1.0)
    idle_w = sampler.mean_power_w(t0, t1)

from wire.codecs import FeatureCodec
from wire.protocol import Frame, decode_message, encode_message
from wire.quant import QuantParams
rng = np.random.default_rng(0)
x = rng.integers(-128, 128, size=(1, 7, 9, 8), dtype=np.int8)
codec = FeatureCodec((8, 7, 9), QuantParams(scale=0.05, zero_point=-3, bits=8), "zstd")
payload = codec.encode_int8(x, layout="NHWC")
ctx = zmq.Context.instance()
a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
a.bind("inproc://smoke"); b.connect("inproc://smoke")
a.send_multipart(encode_message(Frame(session_id=1, seq=2, capture_ts_us=3, payload=payload)))
frame = decode_message(b.recv_multipart())
decoded = codec.decode_float(frame.payload)
expected = (x.astype(np.float32).transpose(0, 3, 1, 2)[0] + 3) * 0.05

from ai_edge_litert.interpreter import Interpreter
print(json.dumps({
    "python": "%d.%d" % sys.version_info[:2],
    "modules": len(names), "skipped": skipped,
    "head_names": [h.name for h in cfg.heads], "camera": cfg.camera.source,
    "idle_w": idle_w,
    "roundtrip_max_err": float(np.max(np.abs(np.asarray(decoded, dtype=np.float32) - expected))),
    "seq": frame.seq, "interpreter": Interpreter.__name__,
    "heavy": sorted(m for m in ("torch", "tensorflow") if m in sys.modules),
}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("version", ["3.9", "3.10"])
def test_device_side_runs_on_a_real_old_interpreter(tmp_path: Path, version: str) -> None:
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter here (looked in {PYENV})")
    if not _index_reachable():
        pytest.skip("the package index (pypi.org) is unreachable from here")
    venv = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, timeout=300)
    vpy = venv / "bin" / "python"
    src = _copy_source(tmp_path / "src")
    install = subprocess.run(
        [str(vpy), "-m", "pip", "install", "--quiet", f"{src}[device]"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [str(vpy), "-m", "pip", "list", "--format=json"], capture_output=True, text=True
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert not any(n.startswith(("torch", "tensorflow")) for n in installed), installed
    assert "tomli" in installed
    run = subprocess.run(
        [str(vpy), "-c", SMOKE, str(ROOT / "examples" / "device.toml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # import the installed packages, not the checkout
    )
    assert run.returncode == 0, f"device smoke failed on Python {version}:\n{run.stderr[-4000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["python"] == version
    assert out["modules"] > 40 and set(out["skipped"]) <= {
        "hardware.camera.picam",
        "hardware.camera.opencv_camera",
    }, out
    assert out["head_names"] and out["camera"] == "synthetic"
    assert out["idle_w"] == pytest.approx(1.5, rel=0.02)
    assert out["roundtrip_max_err"] <= 1e-6 and out["seq"] == 2
    assert out["interpreter"] == "Interpreter" and out["heavy"] == []
