"""The benchmarks' cached int8 head is reused only when it was converted from the same inputs.

Why: ``convert_head`` skips the (minute-long) conversion when the cache matches. It used to
match on model_id and the ``head.pt`` hash, but a re-export with another codec keeps both
(model_id hashes the weights), so the board kept the old ``head.json`` codec while the
server's ``tail.json`` announced the new one. The real converter runs here on a tiny split.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")  # the converter's TFLite stage

from benchmarks.harness.artifacts import CONVERT_KEY, DemoPaths, convert_head  # noqa: E402
from wire.manifest import sha256_file  # noqa: E402


def _export(folder: Path, codec) -> str:
    """A tiny resnet_small split (32x32, cut after rb2) exported with ``codec``; its model_id."""
    from training.bottleneck import split_model
    from training.export import export_split
    from training.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet_small", num_classes=4)
    head, tail = split_model(model, after="rb2", channels=3, stride=2, input_size=(32, 32))
    exp = export_split(
        head, tail, folder, labels=list("abcd"), mean=(0.5,) * 3, std=(0.25,) * 3, codec=codec
    )
    return exp.model_id


@pytest.mark.slow
def test_the_same_weights_with_another_codec_are_converted_again(
    tmp_path, capsys, torch_one_thread
):
    import json

    import numpy as np
    from support.converter_side import write_calibration_folder

    from benchmarks.frontier_zstd_dict import export_with_dictionary
    from training.compressor import CodecConfig
    from wire.manifest import load_head_manifest

    split = tmp_path / "split"
    paths = DemoPaths(tmp_path / "out")
    write_calibration_folder(paths.calib, n=8)
    _export(split, CodecConfig("zstd", 4, {}))
    tflite = convert_head(split, paths)
    assert load_head_manifest(tflite.with_suffix(".json")).codec["name"] == "zstd"
    assert (paths.head_dir / CONVERT_KEY).is_file()

    # the same inputs: the cache is used, the converter does not run
    capsys.readouterr()
    before = tflite.stat().st_mtime_ns
    assert convert_head(split, paths) == tflite
    assert "up to date" in capsys.readouterr().out
    assert tflite.stat().st_mtime_ns == before

    # the zstd_dict re-export copies the programs and rewrites only the codec: model_id and
    # head.pt are byte for byte the same (all the old cache compared), the codec is not
    chw = json.loads((split / "head.pt.json").read_text())["bottleneck_chw"]
    codes = np.random.default_rng(0).integers(0, 16, (64, *chw), dtype=np.uint8)
    export_with_dictionary(split, tmp_path / "split_dict", codes)
    dict_split = tmp_path / "split_dict"
    assert sha256_file(dict_split / "head.pt") == sha256_file(split / "head.pt")
    capsys.readouterr()
    convert_head(dict_split, paths)
    assert "up to date" not in capsys.readouterr().out
    codec = load_head_manifest(tflite.with_suffix(".json")).codec
    want = json.loads((dict_split / "tail.json").read_text())["codec"]
    assert codec["name"] == "zstd_dict" and codec["params"] == want["params"]

    # other calibration photos change the int8 grid: converted again as well
    (paths.calib / "calib_00.png").unlink()
    capsys.readouterr()
    convert_head(dict_split, paths)
    assert "up to date" not in capsys.readouterr().out
