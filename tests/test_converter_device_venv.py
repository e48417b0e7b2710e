"""A converted head runs on a board install: a fresh venv with only ``splitfit[device]``.

The converter environment pins numpy 1.26 / tensorflow 2.19 / ai-edge-litert 2.1 (onnx2tf's
pins); the device extra resolves freely (numpy 2, a newer ai-edge-litert) and has neither
torch nor tensorflow. This checks the int8 model and head.json made here load and run there
through the device's own code path (``device.head.Head``, ``hardware.preprocess``, the wire
codec), and give the same int8 output as the interpreter in this environment.

Slow: creating the venv and installing from the package index takes a minute or two.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.converter_side import (
    ResNetHead,
    eval_pixels,
    make_head,
    run_tflite,
    save_torchscript,
    write_calibration_folder,
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("wire", "hardware", "device", "server", "converter", "training", "benchmarks")

DEVICE_SCRIPT = r"""
import importlib.util, json, sys
from importlib import metadata
import numpy as np
from device.head import Head
from hardware.preprocess import preprocess

model, manifest, pixels_path, out_path = sys.argv[1:5]
head = Head("test", model, manifest, num_threads=2)
pixels = np.load(pixels_path)
outs = [head.run(pixels[i : i + 1]).tensor[0] for i in range(len(pixels))]
codec = head.manifest.feature_codec()
payload = codec.encode_int8(outs[0], layout="NHWC")
np.save(out_path, np.stack(outs))
print(json.dumps({
    "torch": importlib.util.find_spec("torch") is not None,
    "tensorflow": importlib.util.find_spec("tensorflow") is not None,
    "numpy": np.__version__,
    "ai_edge_litert": metadata.version("ai-edge-litert"),
    "payload_bytes": len(payload),
    "decoded_shape": list(codec.decode(payload).shape),
    "input_hw": list(head.input_hw),
}))
"""


def _copy_source(dst: Path) -> Path:
    """Install from a snapshot so pip's in-tree build never writes into the shared checkout."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_converted_head_runs_in_a_device_only_venv(tmp_path):
    from converter.cli import main

    head = make_head(ResNetHead, seed=11)
    model = save_torchscript(head, tmp_path / "head.pt")
    calib = write_calibration_folder(tmp_path / "calib", n=10)
    out = tmp_path / "out"
    out.mkdir()
    args = ["--calib", str(calib), "--input-size", "64", "80", "--no-progress"]
    assert main([str(model), "-o", str(out / "head.tflite"), *args]) == 0

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    src = _copy_source(tmp_path / "src")
    pip = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{src}[device]"],
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]

    pixels = eval_pixels((64, 80), n=4)
    np.save(tmp_path / "pixels.npy", pixels)
    script = tmp_path / "run_head.py"
    script.write_text(DEVICE_SCRIPT)
    files = [out / "head.tflite", out / "head.json", tmp_path / "pixels.npy"]
    proc = subprocess.run(
        [str(py), str(script), *map(str, files), str(tmp_path / "device_out.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the checkout: only the installed package is importable
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["torch"] is False and info["tensorflow"] is False
    assert int(info["numpy"].split(".")[0]) >= 2  # the device extra is free of numpy<2
    assert info["input_hw"] == [64, 80]
    assert info["payload_bytes"] > 0 and len(info["decoded_shape"]) == 3

    on_device = np.load(tmp_path / "device_out.npy")
    here, _, _ = run_tflite(out / "head.tflite", pixels)
    assert on_device.dtype == np.int8 and on_device.shape == here.shape
    # same model, different LiteRT/XNNPACK builds: at most one quantisation step apart
    assert np.abs(on_device.astype(int) - here.astype(int)).max() <= 1
