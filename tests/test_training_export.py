"""Export: TorchScript halves load in a fresh interpreter without splitfit; model_id is a content hash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training.bottleneck import split_model  # noqa: E402
from training.compressor import CodecConfig  # noqa: E402
from training.export import export_split, model_id_of  # noqa: E402
from training.models import create_model  # noqa: E402
from wire.manifest import load_head_source_manifest, load_tail_manifest  # noqa: E402

CODEC = CodecConfig("jpeg", 8, {"quality": 20})


def _split(seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("resnet_small", num_classes=4)
    return split_model(model, after="rb2", channels=3, stride=2, input_size=(32, 32))


def test_exported_halves_load_in_a_fresh_process_without_splitfit(tmp_path: Path) -> None:
    head, tail = _split()
    labels = ["a", "b", "c", "d"]
    exp = export_split(
        head, tail, tmp_path, labels=labels, mean=(0.5,) * 3, std=(0.25,) * 3, codec=CODEC
    )
    head.eval()
    tail.eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        z = head(x)
        expected = tail(z)
    torch.save({"x": x, "z": z, "y": expected}, tmp_path / "io.pt")
    # The child runs from an empty directory with no access to the repo: if the programs
    # needed splitfit's classes, importing them would fail there.
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("training", "wire", "converter", "server", "device"):
            raise ImportError("splitfit is blocked in this process: " + name)
sys.meta_path.insert(0, Block())
import torch
io = torch.load({str(tmp_path / "io.pt")!r})
head = torch.jit.load({str(exp.head)!r}); tail = torch.jit.load({str(exp.tail)!r})
with torch.no_grad():
    z = head(io["x"]); y = tail(z)
assert torch.allclose(z, io["z"], atol=1e-5), (z - io["z"]).abs().max()
assert torch.allclose(y, io["y"], atol=1e-4), (y - io["y"]).abs().max()
assert not any(m == "training" or m.startswith("training.") for m in sys.modules)
print("OK", tuple(z.shape), tuple(y.shape))
"""
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=empty, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK (3, 3, 8, 8) (3, 4)" in proc.stdout

    src = load_head_source_manifest(exp.head_manifest)
    tail_m = load_tail_manifest(exp.tail_manifest)
    assert src.model_id == tail_m.model_id == exp.model_id
    assert src.bottleneck_chw == [3, 8, 8] == tail_m.input_chw
    assert src.input_hw == [32, 32]
    assert src.normalization == {"mean": [0.5] * 3, "std": [0.25] * 3}
    assert tail_m.labels == labels and tail_m.num_classes == 4
    assert tail_m.codec == {"name": "jpeg", "bits": 8, "params": {"quality": 20}}
    assert tail_m.split["after"] == "rb2" and tail_m.split["stride"] == 2
    assert tail_m.split["quant"]["zero_point"] == -128
    assert tail_m.split["quant"]["scale"] == pytest.approx(6.0 / 255.0)
    raw = json.loads(exp.head_manifest.read_text())
    assert raw["format"] == "splitfit-head-source/1"


def test_model_id_changes_when_any_weight_changes() -> None:
    head, tail = _split()
    base = model_id_of(head, tail, head.spec)
    assert model_id_of(head, tail, head.spec) == base  # deterministic
    with torch.no_grad():
        tail.classifier.fc.bias[0] += 1e-3
    changed_tail = model_id_of(head, tail, head.spec)
    assert changed_tail != base
    with torch.no_grad():
        head.reduction.spatial[1].running_mean[0] += 1e-3  # a buffer counts too
    assert model_id_of(head, tail, head.spec) not in (base, changed_tail)
    other_head, other_tail = _split(seed=1)
    assert model_id_of(other_head, other_tail, other_head.spec) != base


def test_export_rejects_label_count_mismatch(tmp_path: Path) -> None:
    head, tail = _split()
    with pytest.raises(ValueError, match="3 labels for a classifier with 4 outputs"):
        export_split(
            head, tail, tmp_path, labels=["a", "b", "c"], mean=(0,) * 3, std=(1,) * 3, codec=CODEC
        )
    assert not (tmp_path / "head.pt").exists()


def test_tail_accepts_batches_larger_than_the_trace(tmp_path: Path) -> None:
    head, tail = _split()
    exp = export_split(
        head, tail, tmp_path, labels=list("abcd"), mean=(0,) * 3, std=(1,) * 3, codec=CODEC
    )
    loaded = torch.jit.load(str(exp.tail))
    z = torch.rand(5, 3, 8, 8) * 6
    tail.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(z), tail(z), atol=1e-4)
