"""convert-head end to end: real heads, real photos, the real toolchain and interpreter.

Heads come from ``support.converter_side`` (a BottleNet-style ResNet head with a residual add
and a reduction unit; a MobileNet-style depthwise head), saved as TorchScript or a torch.export program,
converted by the real route (ONNX -> onnx2tf -> TFLiteConverter) and run with ai-edge-litert.
The float reference is computed here from the *unwrapped* PyTorch head with the
normalisation written out by hand, so a mistake in the converter's folding shows up.

One conversion runs in the default suite (~15 s); the others are ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support.converter_side import (
    MEAN,
    STD,
    DepthwiseHead,
    ResNetHead,
    eval_pixels,
    make_head,
    run_tflite,
    save_exported,
    save_torchscript,
    write_calibration_folder,
)
from torch import nn

from converter.cli import main
from wire.manifest import load_head_manifest, sha256_file

ALLOWED = {np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32)}


# ----------------------------------------------------------------------------- checks


def float_reference(head: nn.Module, pixels: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """PyTorch float output in NHWC, normalisation done here by hand (not by the converter)."""
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return head(x).permute(0, 2, 3, 1).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2, b2 = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a2 * b2).sum(1) / (np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1))


def check_converted(head: nn.Module, tflite: Path, hw: tuple[int, int], mean=MEAN, std=STD) -> dict:
    """Independent checks of a converted head: integer-only, raw-pixel input, agreement."""
    manifest = load_head_manifest(tflite.with_suffix(".json"))
    assert manifest.tflite_sha256 == sha256_file(tflite)
    pixels = eval_pixels(hw)
    q, io, interp = run_tflite(tflite, pixels)
    tensors = interp.get_tensor_details()
    floats = [t["name"] for t in tensors if np.dtype(t["dtype"]) not in ALLOWED]
    assert floats == [], f"float tensors in the int8 model: {floats}"
    assert np.dtype(io["input"]["dtype"]) == np.uint8
    assert list(io["input"]["shape"]) == [1, *hw, 3] == manifest.input.shape
    scale_in, zp_in = io["input"]["quantization"]
    assert zp_in == 0 and abs(scale_in - 1 / 255) < 1e-7
    assert np.dtype(io["output"]["dtype"]) == np.int8
    scale, zp = io["output"]["quantization"]
    assert (scale, zp) == (pytest.approx(manifest.output.scale), manifest.output.zero_point)
    ops = io["ops"]
    assert dict(ops) == manifest.extra["ops"]
    assert manifest.normalization == {"mean": list(mean), "std": list(std)}
    ref = float_reference(head, pixels, mean, std)
    assert ref.shape == q.shape
    assert manifest.bottleneck_chw == [ref.shape[3], ref.shape[1], ref.shape[2]]
    deq = (q.astype(np.float32) - zp) * scale
    cos = cosine(ref, deq)
    assert cos.min() >= 0.99, f"cosine vs PyTorch {cos}"
    return {"manifest": manifest, "cosine": cos, "ops": ops, "convs": io["convs"]}


def outputs_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- default run


@pytest.fixture(scope="module")
def resnet_ts_conversion(tmp_path_factory):
    """The one quick end-to-end conversion: TorchScript ResNet head, non-square, real photos."""
    root = tmp_path_factory.mktemp("resnet_ts")
    head = make_head(ResNetHead, seed=0)
    model = save_torchscript(head, root / "head.pt")
    calib = write_calibration_folder(root / "calib")
    out = root / "out"
    out.mkdir()
    labels = root / "labels.txt"
    labels.write_text("tabby cat\n\nespresso\nspace shuttle\n")
    hw = (96, 128)
    args = [
        str(model),
        "-o",
        str(out / "head.tflite"),
        "--calib",
        str(calib),
        "--labels",
        str(labels),
    ]
    rc = main([*args, "--input-size", str(hw[0]), str(hw[1]), "--no-progress"])
    return {"rc": rc, "head": head, "model": model, "out": out, "hw": hw, "calib": calib}


def test_torchscript_resnet_head_converts_to_full_int8_that_matches_pytorch(resnet_ts_conversion):
    conv = resnet_ts_conversion
    assert conv["rc"] == 0
    assert outputs_in(conv["out"]) == ["head.json", "head.tflite"]
    result = check_converted(conv["head"], conv["out"] / "head.tflite", conv["hw"])
    m = result["manifest"]
    # a bare TorchScript file: model_id is the sha256 of the model file
    assert m.model_id == sha256_file(conv["model"]) == m.source_sha256
    assert m.output.layout == "NHWC" and m.output.dtype == "int8"
    assert m.labels == ["tabby cat", "espresso", "space shuttle"]
    assert m.extra["output_range"]["from"] == "calibration"
    assert m.extra["verification"]["cosine_min"] >= 0.99
    assert m.extra["verification"]["n_images"] == 3  # 15 images, every 5th held out
    assert m.extra["calibration"]["images"] == 12
    # the residual add and the reduction unit survived as int8 ops
    assert result["ops"]["ADD"] >= 2 and result["ops"]["CONV_2D"] >= 7
    # the stem's MaxPool(padding=1) was rewritten to zero-pad + unpadded pool
    assert len(m.extra["rewrites"]["maxpool_zero_padded"]) == 1
    # int8 speed (converter.narrow_conv): the 7x7 stem on 3 channels, which XNNPACK's int8
    # kernels would pad to 8 channels per tap, became a 1x7 im2col row conv (3 -> 21
    # channels) + a 7x1 conv on 21 channels; no conv left reads < 8 channels over > 1 row
    assert len(m.extra["rewrites"]["narrow_conv_split"]) == 1
    narrow = [f for f in result["convs"] if f[3] < 8]
    assert narrow == [[21, 1, 7, 3]], result["convs"]
    assert [32, 7, 1, 21] in result["convs"]
    # the normalisation is one per-channel conv, not an int8 SUB + MUL pair
    assert result["ops"]["DEPTHWISE_CONV_2D"] == 1
    assert "SUB" not in result["ops"] and "MUL" not in result["ops"]
    assert m.extra["versions"]["onnx2tf"] == "1.29.24"
    assert set(m.extra["tensor_dtypes"]) <= {"int8", "uint8", "int32"}


def test_converted_head_output_feeds_the_wire_codec(resnet_ts_conversion):
    """The manifest's quantisation is what the device hands the codec; it must round-trip."""
    from wire.codecs import FeatureCodec

    conv = resnet_ts_conversion
    m = load_head_manifest(conv["out"] / "head.json")
    q, _, _ = run_tflite(conv["out"] / "head.tflite", eval_pixels(conv["hw"], n=1))
    codec = FeatureCodec(tuple(m.bottleneck_chw), m.quant_params(), "raw")
    decoded = codec.decode_float(codec.encode_int8(q[0], layout="NHWC"))
    expected = (q[0].astype(np.float32) - m.output.zero_point) * m.output.scale
    np.testing.assert_allclose(decoded, expected.transpose(2, 0, 1), atol=1e-6)


# ----------------------------------------------------------------------------- slow: more heads


def _convert(model: Path, out: Path, calib: Path, *extra: str) -> int:
    return main([str(model), "-o", str(out / "head.tflite"), "--calib", str(calib), *extra])


@pytest.fixture(scope="module")
def photo_calib(tmp_path_factory) -> Path:
    return write_calibration_folder(tmp_path_factory.mktemp("photos") / "calib")


@pytest.mark.slow
def test_exported_program_resnet_head_square(tmp_path, photo_calib):
    head = make_head(ResNetHead, seed=1)
    model = save_exported(head, tmp_path / "head.pt2", (112, 112))
    out = tmp_path / "out"
    out.mkdir()
    assert _convert(model, out, photo_calib, "--no-progress") == 0  # size from the program
    result = check_converted(head, out / "head.tflite", (112, 112))
    assert result["manifest"].extra["source"]["kind"] == "exported_program"
    assert result["ops"]["ADD"] >= 2


@pytest.mark.slow
def test_depthwise_head_non_square_with_custom_normalisation(tmp_path, photo_calib):
    """torch.export program of a depthwise head at 80x144 with its own mean/std.

    (The TorchScript route is covered by the quick test; one conversion per case keeps
    the slow suite short.)
    """
    head = make_head(DepthwiseHead, seed=2)
    hw = (80, 144)
    model = save_exported(head, tmp_path / "head.pt2", hw)
    out = tmp_path / "out"
    out.mkdir()
    mean, std = (0.5, 0.45, 0.4), (0.25, 0.25, 0.3)
    norm = ["--mean", *map(str, mean), "--std", *map(str, std)]
    rc = _convert(model, out, photo_calib, "--input-size", "80", "144", *norm, "--no-progress")
    assert rc == 0
    result = check_converted(head, out / "head.tflite", hw, mean, std)
    assert result["ops"]["DEPTHWISE_CONV_2D"] >= 3
    assert result["manifest"].bottleneck_chw == [6, 10, 18]


@pytest.mark.slow
def test_training_export_is_converted_with_its_manifest_and_tail(tmp_path, photo_calib, capsys):
    """The real training export (head.pt + head.pt.json, tail.pt + tail.json) -> convert-head.

    Defaults come from head.pt.json (no --input-size/--mean/--std/--labels), the model_id is
    carried over, junk in the calibration folder is skipped with a warning, and the tail
    gives a top-1 agreement figure.
    """
    from training.bottleneck import split_model
    from training.compressor import CodecConfig
    from training.export import export_split
    from training.models import create_model

    torch.manual_seed(3)
    backbone = create_model("resnet18", num_classes=5).eval()
    head, tail = split_model(backbone, "rb1", channels=8, stride=2, input_size=(96, 96))
    labels = ["cat", "coffee", "rocket", "flower", "person"]
    exported = export_split(
        head,
        tail,
        tmp_path / "export",
        labels=labels,
        mean=MEAN,
        std=STD,
        codec=CodecConfig("png", 6, {}),
    )
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in photo_calib.iterdir():
        (calib / p.name).write_bytes(p.read_bytes())
    (calib / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (calib / "README.txt").write_text("calibration photos")
    out = tmp_path / "out"
    out.mkdir()
    rc = _convert(exported.head, out, calib, "--tail", str(exported.tail), "--no-progress")
    err = capsys.readouterr().err
    assert rc == 0, err
    assert err.count("warning: skipping") == 2
    m = load_head_manifest(out / "head.json")
    assert m.model_id == exported.model_id != m.source_sha256
    assert m.labels == labels
    assert m.codec == {"name": "png", "bits": 6, "params": {}}
    assert m.input.shape == [1, 96, 96, 3]
    assert m.extra["split"]["after"] == "rb1"
    assert sorted(m.extra["calibration"]["skipped"]) == ["README.txt", "corrupt.jpg"]
    # the int8 output grid is the one training simulated: ReLU6-bounded, scale 6/255, zp -128
    assert m.extra["output_range"] == {
        "range": [0.0, 6.0],
        "from": "head.pt.json (extra.split.quant)",
    }
    assert m.output.scale == pytest.approx(6.0 / 255.0, rel=1e-6) and m.output.zero_point == -128
    ver = m.extra["verification"]
    assert ver["tail_images"] == 3 and 0.0 <= ver["top1_agreement"] <= 1.0
    check_converted(torch.jit.load(str(exported.head)), out / "head.tflite", (96, 96))


@pytest.mark.slow
def test_verification_below_min_cosine_writes_nothing(tmp_path, photo_calib, capsys):
    head = make_head(ResNetHead, seed=4)
    model = save_torchscript(head, tmp_path / "head.pt")
    out = tmp_path / "out"
    out.mkdir()
    stale = {"head.tflite": b"old model", "head.json": b"{}"}
    for name, data in stale.items():
        (out / name).write_bytes(data)
    args = ["--input-size", "64", "64", "--min-cosine", "1.0", "--no-progress"]
    rc = _convert(model, out, photo_calib, *args)
    err = capsys.readouterr().err
    assert rc == 9, err
    assert "verification failed" in err and "--min-cosine 1.0" in err and "Traceback" not in err
    # no new files, no temp files; what was there before is untouched
    assert {p.name: p.read_bytes() for p in out.iterdir()} == stale


class ErfHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(self.conv(x))


class CumsumHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(torch.relu(self.conv(x)), dim=3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "needles"),
    [
        (ErfHead, ["unsupported op 'tf.Erf'", "ONNX node /head/Erf"]),
        (CumsumHead, ["unsupported op 'CUMSUM'", "ONNX node /head/CumSum", "no int8 kernel"]),
    ],
)
def test_op_without_int8_kernel_is_named(tmp_path, capsys, cls, needles):
    model = save_torchscript(cls().eval(), tmp_path / "head.pt")
    out = tmp_path / "out"
    out.mkdir()
    args = ["--input-size", "32", "32", "--no-progress"]
    rc = main([str(model), "-o", str(out / "head.tflite"), "--calib-synthetic", "6", *args])
    err = capsys.readouterr().err
    assert rc == 6, err
    for needle in needles:
        assert needle in err
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_padded_maxpool_without_the_rewrite_is_caught_by_the_probe(
    tmp_path, photo_calib, capsys, monkeypatch
):
    """Pitfall (1): float-min max-pool padding makes an unloadable int8 model.

    With the rewrite switched off the converter must notice (in the probe subprocess) and
    refuse, instead of writing a model that kills the device at start-up.
    """
    import converter.onnx_export
    from converter.onnx_graph import RewriteReport

    monkeypatch.setattr(converter.onnx_export, "zero_pad_maxpools", lambda model: RewriteReport())
    model = save_torchscript(make_head(ResNetHead, seed=5), tmp_path / "head.pt")
    out = tmp_path / "out"
    out.mkdir()
    rc = _convert(model, out, photo_calib, "--input-size", "64", "64", "--no-progress")
    err = capsys.readouterr().err
    assert rc == 8, err
    assert "in the TFLite interpreter at allocate_tensors" in err
    assert list(out.iterdir()) == []
