"""convert-head on bad input: the right error, a one-line message, non-zero exit, no output.

These fail before the TensorFlow stage, so they are quick; the failures that need a full
conversion (op without an int8 kernel, verification below --min-cosine, an unloadable
model) are in ``test_converter.py`` under ``slow``.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from torch import nn

from converter.cli import main
from converter.errors import CalibrationError, InvalidModelError
from converter.images import ensure_full_range, load_image_folder, split_holdout
from converter.onnx_graph import zero_pad_maxpools
from converter.pipeline import run_probe
from converter.source import detect_kind
from wire.manifest import HeadSourceManifest, save_manifest

ROOT = Path(__file__).resolve().parents[1]


class TinyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class FlattenHead(nn.Module):
    """Only works at 32x32: the Linear layer fixes the spatial size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.fc = nn.Linear(4 * 16 * 16, 4 * 16 * 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.fc(y.flatten(1)).view(1, 4, 16, 16)


class FFTHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(self.conv(x)).abs()


class GreyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _ts(module: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


def _calib(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def env(tmp_path: Path) -> dict:
    out = tmp_path / "out"
    out.mkdir()
    return {
        "root": tmp_path,
        "out": out,
        "tflite": out / "head.tflite",
        "calib": _calib(tmp_path / "calib"),
        "tiny": _ts(TinyHead(), tmp_path / "tiny.pt"),
    }


def run(args: list[str], capsys) -> tuple[int, str]:
    rc = main([*[str(a) for a in args], "--no-progress"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def assert_failed_cleanly(rc: int, err: str, code: int, *needles: str, out: Path) -> None:
    assert rc == code, err
    line = [ln for ln in err.splitlines() if ln.startswith("convert-head: error:")]
    assert len(line) == 1, err
    for needle in needles:
        assert needle in line[0], line[0]
    assert list(out.iterdir()) == [], "a failed conversion left files behind"


# ----------------------------------------------------------------------------- model file


def test_missing_model_file(env, capsys):
    rc, err = run([env["root"] / "nope.pt", "-o", env["tflite"], "--calib", env["calib"]], capsys)
    assert_failed_cleanly(rc, err, 3, "model file not found", "nope.pt", out=env["out"])


def test_text_file_is_not_a_model(env, capsys):
    bogus = env["root"] / "head.pt"
    bogus.write_text("definitely not weights\n")
    rc, err = run([bogus, "-o", env["tflite"], "--calib", env["calib"]], capsys)
    assert_failed_cleanly(rc, err, 3, "not a model", out=env["out"])


def test_state_dict_is_not_a_model(env, capsys):
    sd = env["root"] / "weights.pt"
    torch.save(TinyHead().state_dict(), sd)
    rc, err = run([sd, "-o", env["tflite"], "--calib", env["calib"]], capsys)
    assert_failed_cleanly(rc, err, 3, "torch.save checkpoint", "torch.jit.save", out=env["out"])


def test_truncated_torchscript_is_not_a_model(env, capsys):
    broken = env["root"] / "broken.pt"
    data = env["tiny"].read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    rc, err = run([broken, "-o", env["tflite"], "--calib", env["calib"]], capsys)
    assert_failed_cleanly(rc, err, 3, "not a model", out=env["out"])


def test_zip_without_model_is_not_a_model(env, capsys):
    z = env["root"] / "photos.pt"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    rc, err = run([z, "-o", env["tflite"], "--calib", env["calib"]], capsys)
    assert_failed_cleanly(rc, err, 3, "not a PyTorch model", out=env["out"])


def test_detect_kind_recognises_both_formats(tmp_path):
    ts = _ts(TinyHead(), tmp_path / "a.bin")
    ep = torch.export.export(TinyHead().eval(), (torch.rand(1, 3, 16, 16),))
    torch.export.save(ep, str(tmp_path / "b.bin"))
    assert detect_kind(ts) == "torchscript"
    assert detect_kind(tmp_path / "b.bin") == "exported_program"


# ----------------------------------------------------------------------------- calibration


def test_empty_calibration_folder(env, capsys):
    empty = env["root"] / "empty"
    empty.mkdir()
    rc, err = run([env["tiny"], "-o", env["tflite"], "--calib", empty], capsys)
    assert_failed_cleanly(rc, err, 5, "is empty", out=env["out"])


def test_missing_calibration_folder(env, capsys):
    rc, err = run([env["tiny"], "-o", env["tflite"], "--calib", env["root"] / "nowhere"], capsys)
    assert_failed_cleanly(rc, err, 5, "calibration folder not found", out=env["out"])


def test_only_undecodable_images(env, capsys):
    junk = env["root"] / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (junk / "b.png").write_text("hello")
    rc, err = run([env["tiny"], "-o", env["tflite"], "--calib", junk], capsys)
    assert_failed_cleanly(rc, err, 5, "none of the 2 files", out=env["out"])
    assert err.count("warning: skipping") == 2


def test_undecodable_images_are_skipped_with_a_warning(tmp_path):
    folder = _calib(tmp_path / "mixed", n=3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "notes.txt").write_text("not an image")
    warnings: list[str] = []
    images = load_image_folder(folder, (24, 32), warnings.append, progress=False)
    assert images.pixels.shape == (3, 24, 32, 3)
    assert images.pixels.dtype == np.uint8
    assert sorted(images.skipped) == ["broken.jpg", "notes.txt"]
    assert len(warnings) == 2 and all("cannot decode" in w for w in warnings)


def test_calibration_pins_the_input_range_and_holds_images_out():
    pixels = np.full((3, 8, 8, 3), 100, np.uint8)
    full = ensure_full_range(pixels)
    assert full.min() == 0 and full.max() == 255 and pixels.min() == 100  # a copy
    calib, hold = split_holdout(15, lambda m: None)
    assert hold == [4, 9, 14] and not set(calib) & set(hold) and len(calib) == 12
    with pytest.raises(CalibrationError):
        load_image_folder(Path("/nonexistent-folder"), (8, 8), print)


# ----------------------------------------------------------------------------- input size


def test_exported_program_at_another_size(env, capsys):
    pt2 = env["root"] / "head.pt2"
    torch.export.save(torch.export.export(TinyHead().eval(), (torch.rand(1, 3, 64, 64),)), str(pt2))
    args = [pt2, "-o", env["tflite"], "--calib", env["calib"], "--input-size", "96", "96"]
    rc, err = run(args, capsys)
    assert_failed_cleanly(rc, err, 4, "input size mismatch", "64x64", "96x96", out=env["out"])


def test_head_that_rejects_the_input_size(env, capsys):
    model = _ts(FlattenHead(), env["root"] / "flat.pt")
    args = [model, "-o", env["tflite"], "--calib", env["calib"], "--input-size", "48", "48"]
    rc, err = run(args, capsys)
    assert_failed_cleanly(rc, err, 4, "input size mismatch", "1x3x48x48", out=env["out"])


def test_grey_head_is_refused(env, capsys):
    pt2 = env["root"] / "grey.pt2"
    torch.export.save(torch.export.export(GreyHead().eval(), (torch.rand(1, 1, 32, 32),)), str(pt2))
    rc, err = run([pt2, "-o", env["tflite"], "--calib", env["calib"]], capsys)
    assert_failed_cleanly(rc, err, 4, "1 input channels", out=env["out"])


def _source_manifest(path: Path, **over) -> None:
    fields = {
        "model_id": "split-model-abc",
        "input_hw": [32, 32],
        "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "labels": ["cat", "dog"],
        "bottleneck_chw": [4, 16, 16],
        "codec": {"name": "jpeg", "bits": 8, "params": {"quality": 20}},
    }
    fields.update(over)
    save_manifest(HeadSourceManifest(**fields), path)


def test_input_size_contradicting_the_source_manifest(env, capsys):
    _source_manifest(env["tiny"].with_name("tiny.pt.json"))
    args = [env["tiny"], "-o", env["tflite"], "--calib", env["calib"], "--input-size", "40", "40"]
    rc, err = run(args, capsys)
    assert_failed_cleanly(rc, err, 4, "input size mismatch", "tiny.pt.json", out=env["out"])


def test_bottleneck_contradicting_the_source_manifest(env, capsys):
    _source_manifest(env["tiny"].with_name("tiny.pt.json"), bottleneck_chw=[4, 8, 8])
    rc, err = run([env["tiny"], "-o", env["tflite"], "--calib", env["calib"]], capsys)
    assert_failed_cleanly(rc, err, 4, "[4, 16, 16]", "[4, 8, 8]", out=env["out"])


def test_broken_source_manifest_is_an_error_not_ignored(env, capsys):
    env["tiny"].with_name("tiny.pt.json").write_text('{"format": "splitfit-head-source/1"}')
    rc, err = run([env["tiny"], "-o", env["tflite"], "--calib", env["calib"]], capsys)
    assert_failed_cleanly(rc, err, 3, "bad source manifest", "missing key", out=env["out"])


def test_tail_of_another_split_model_is_refused(env, capsys):
    _source_manifest(env["tiny"].with_name("tiny.pt.json"))
    tail = _ts(nn.Conv2d(4, 2, 1), env["root"] / "tail.pt")
    tail.with_suffix(".json").write_text('{"model_id": "some-other-model"}')
    args = [env["tiny"], "-o", env["tflite"], "--calib", env["calib"], "--tail", tail]
    rc, err = run(args, capsys)
    assert_failed_cleanly(rc, err, 3, "different split models", "some-other-model", out=env["out"])


def test_missing_labels_file(env, capsys):
    args = [env["tiny"], "-o", env["tflite"], "--calib", env["calib"], "--labels", "nope.txt"]
    rc, err = run(args, capsys)
    assert_failed_cleanly(rc, err, 3, "labels file not found", out=env["out"])


def test_labels_json_must_be_a_list_of_strings(env, capsys):
    labels = env["root"] / "labels.json"
    labels.write_text('{"0": "cat"}')
    args = [env["tiny"], "-o", env["tflite"], "--calib", env["calib"], "--labels", labels]
    rc, err = run(args, capsys)
    assert_failed_cleanly(rc, err, 3, "JSON list of strings", out=env["out"])


def test_labels_that_do_not_match_the_tail(env, capsys):
    tail = nn.Sequential(nn.Conv2d(4, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    tail_pt = _ts(tail, env["root"] / "tail.pt")
    labels = env["root"] / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    args = [env["tiny"], "-o", env["tflite"], "--calib", env["calib"], "--input-size", "32", "32"]
    rc, err = run([*args, "--tail", tail_pt, "--labels", labels], capsys)
    assert_failed_cleanly(rc, err, 3, "3 labels but the tail outputs 2 classes", out=env["out"])


def test_output_range_must_contain_zero(env, capsys):
    args = [env["tiny"], "-o", env["tflite"], "--calib", env["calib"], "--output-range", "1", "6"]
    rc, err = run(args, capsys)
    assert_failed_cleanly(rc, err, 1, "lo <= 0 < hi", out=env["out"])


# ----------------------------------------------------------------------------- ops, options


def test_op_without_onnx_mapping_is_named_with_its_location(env, capsys):
    model = _ts(FFTHead(), env["root"] / "fft.pt")
    args = [model, "-o", env["tflite"], "--calib", env["calib"], "--input-size", "32", "32"]
    rc, err = run(args, capsys)
    assert_failed_cleanly(rc, err, 6, "unsupported op 'aten::fft_rfft2'", out=env["out"])
    assert "FFTHead" in err and "test_converter_errors.py" in err  # module + source line


def test_output_folder_must_exist(env, capsys):
    args = [env["tiny"], "-o", env["root"] / "missing" / "h.tflite", "--calib", env["calib"]]
    rc, err = run(args, capsys)
    assert rc == 1 and "output folder does not exist" in err


def test_calibration_source_is_required(env):
    with pytest.raises(SystemExit) as exc:
        main([str(env["tiny"]), "-o", str(env["tflite"])])
    assert exc.value.code == 2


def test_garbage_tflite_is_rejected_by_the_probe(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + bytes(200))
    with pytest.raises(InvalidModelError, match="TFLite interpreter at load"):
        run_probe(bad, np.zeros((1, 8, 8, 3), np.uint8), tmp_path)


def test_installed_entry_point_fails_with_one_line(tmp_path):
    exe = Path(sys.executable).with_name("convert-head")
    proc = subprocess.run(
        [
            str(exe),
            str(tmp_path / "none.pt"),
            "-o",
            str(tmp_path / "h.tflite"),
            "--calib-synthetic",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        f"convert-head: error: model file not found: {tmp_path / 'none.pt'}"
    ]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- ONNX rewrite


def _relu_maxpool_model(producer: str) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 7, 9])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 5])
    nodes = [
        helper.make_node(producer, ["x"], ["a"], name="act"),
        helper.make_node(
            "MaxPool",
            ["a"],
            ["y"],
            name="pool",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
    ]
    graph = helper.make_graph(nodes, "g", [x], [y])
    # IR 8: what the installed onnxruntime reads (newer onnx defaults to a newer IR)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_maxpool_zero_padding_is_exact_after_relu():
    import onnxruntime as ort

    model = _relu_maxpool_model("Relu")
    before = model.SerializeToString()
    report = zero_pad_maxpools(model)
    onnx.checker.check_model(model)
    assert report.maxpool_zero_padded == ["pool"]
    assert [n.op_type for n in model.graph.node] == ["Relu", "Pad", "MaxPool"]
    pool = model.graph.node[2]
    assert list(next(a for a in pool.attribute if a.name == "pads").ints) == [0, 0, 0, 0]
    x = np.random.default_rng(0).normal(size=(1, 2, 7, 9)).astype(np.float32)
    ref = ort.InferenceSession(before).run(None, {"x": x})[0]
    new = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ref, new)


def test_maxpool_on_a_signed_input_is_not_rewritten():
    model = _relu_maxpool_model("Neg")
    report = zero_pad_maxpools(model)
    assert report.maxpool_zero_padded == [] and report.maxpool_left_padded == ["pool"]
    assert [n.op_type for n in model.graph.node] == ["Neg", "MaxPool"]


def test_output_range_gives_the_grid_training_simulates():
    from converter.pipeline import output_quant_for
    from training.compressor import quant_params_for

    for out_max in (1.0, 6.0, 10.0):
        qp = quant_params_for(out_max)
        scale, zp = output_quant_for(0.0, out_max)
        assert (scale, zp) == (pytest.approx(qp.scale), qp.zero_point)
    scale, zp = output_quant_for(-2.0, 2.0)
    assert scale == pytest.approx(4 / 255) and pytest.approx((-128 - zp) * scale, abs=scale) == -2.0
