"""Manifests: round trip, atomic save, and errors that name the bad key."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from wire.errors import ManifestError
from wire.manifest import (
    HeadManifest,
    HeadSourceManifest,
    TailManifest,
    TensorSpec,
    load_head_manifest,
    load_head_source_manifest,
    load_tail_manifest,
    save_manifest,
    sha256_file,
)
from wire.quant import QuantParams

SHA = "ab" * 32
HEAD = HeadManifest(
    model_id="split-0123abcd",
    input=TensorSpec([1, 224, 224, 3], "uint8", "NHWC"),
    output=TensorSpec([1, 28, 28, 2], "int8", "NHWC", scale=0.0312, zero_point=-128),
    bottleneck_chw=[2, 28, 28],
    normalization={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    codec={"name": "jpeg", "bits": 8, "params": {"quality": 20}},
    labels=["cat", "dog"],
    source_sha256=SHA,
    tflite_sha256="cd" * 32,
    extra={"split": {"after": "block3"}},
)
TAIL = TailManifest(
    model_id="split-0123abcd",
    input_chw=[2, 28, 28],
    num_classes=2,
    labels=["cat", "dog"],
    codec={"name": "zstd", "bits": 4, "params": {}},
    split={"after": "block3"},
    extra={"accuracy": 0.91},
)
SOURCE = HeadSourceManifest(
    model_id="split-0123abcd",
    input_hw=[224, 224],
    normalization={"mean": [0.5], "std": [0.25]},
    labels=["cat", "dog"],
    bottleneck_chw=[2, 28, 28],
    codec={"name": "raw", "bits": 2, "params": {}},
)


@pytest.mark.parametrize(
    ("manifest", "loader"),
    [(HEAD, load_head_manifest), (TAIL, load_tail_manifest), (SOURCE, load_head_source_manifest)],
)
def test_save_then_load_round_trips(tmp_path: Path, manifest, loader) -> None:
    path = tmp_path / "m.json"
    save_manifest(manifest, path)
    assert loader(path) == manifest
    assert next(iter(json.loads(path.read_text()))) == "format"
    assert sorted(os.listdir(tmp_path)) == ["m.json"]  # no temp file left behind


def test_head_manifest_builds_the_wire_codec() -> None:
    fc = HEAD.feature_codec()
    assert fc.shape_chw == (2, 28, 28) and fc.codec == "jpeg" and fc.params == {"quality": 20}
    assert fc.quant == QuantParams(0.0312, -128, 8)


def _write(tmp_path: Path, d) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d) if not isinstance(d, str) else d)
    return p


def _head_dict() -> dict:
    from wire.manifest import manifest_to_dict

    return json.loads(json.dumps(manifest_to_dict(HEAD)))


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(colour=1), "unknown key 'colour'"),
        (lambda d: d.pop("labels"), "missing key 'labels'"),
        (lambda d: d.update(format="splitfit-tail/1"), "format must be 'splitfit-head/1'"),
        (lambda d: d["output"].update(scale="0.1"), "output.scale must be a number"),
        (lambda d: d["output"].update(scale=None), "output needs scale and zero_point"),
        (lambda d: d["output"].update(zero_point=300), "output.zero_point"),
        (lambda d: d["output"].update(shap=[1]), "unknown key 'output.shap'"),
        (lambda d: d["input"].update(shape=[1, 0, 3]), r"input.shape\[1\]"),
        (lambda d: d.update(bottleneck_chw=[2, 28]), "bottleneck_chw must be an array of 3"),
        (lambda d: d.update(bottleneck_chw=[4, 28, 28]), "bottleneck_chw .* disagrees"),
        (lambda d: d["codec"].update(name="gif"), "codec.name must be one of .*; got 'gif'"),
        (lambda d: d["codec"].update(bits=9), r"codec.bits must be in \[1, 8\], got 9"),
        (lambda d: d["codec"]["params"].update(q=1), "codec.params .*unknown jpeg parameter 'q'"),
        (lambda d: d["normalization"].update(std=[1, 0, 1]), r"normalization.std\[1\]"),
        (lambda d: d.update(tflite_sha256="xyz"), "tflite_sha256 must match"),
        (lambda d: d.update(labels=["a", 3]), r"labels\[1\] must be a string"),
        (lambda d: d.update(model_id=""), "model_id must be a non-empty string"),
    ],
)
def test_bad_head_manifest_errors_name_the_key(tmp_path: Path, mutate, needle) -> None:
    d = _head_dict()
    mutate(d)
    path = _write(tmp_path, d)
    with pytest.raises(ManifestError, match=needle) as info:
        load_head_manifest(path)
    assert str(path) in str(info.value)


def test_unreadable_manifests(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such manifest"):
        load_tail_manifest(tmp_path / "nope.json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_tail_manifest(_write(tmp_path, "{oops"))
    with pytest.raises(ManifestError, match="expected an object"):
        load_tail_manifest(_write(tmp_path, "[]"))


def test_tail_labels_must_match_num_classes(tmp_path: Path) -> None:
    p = tmp_path / "tail.json"
    with pytest.raises(ManifestError, match="2 labels for num_classes=3"):
        save_manifest(replace(TAIL, num_classes=3), p)
    assert not p.exists()


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "head.json"
    save_manifest(HEAD, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_manifest(replace(HEAD, model_id="other"), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["head.json"]


def test_sha256_file_matches_hashlib_on_multi_chunk_file(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes((1 << 20) * 2 + 17)
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_saved_manifest_is_readable_by_other_users(tmp_path):
    """The daemon runs as its own user; mkstemp's 0600 would lock it out of head.json."""
    import os
    import stat

    from wire.manifest import TailManifest, load_tail_manifest, save_manifest

    m = TailManifest(
        model_id="ab" * 32, input_chw=[2, 3, 4], num_classes=2, labels=["a", "b"],
        codec={"name": "raw", "bits": 8, "params": {}}, split={}, extra={},
    )  # fmt: skip
    old = os.umask(0o022)
    try:
        save_manifest(m, tmp_path / "tail.json")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "tail.json").stat().st_mode)
    assert mode == 0o644
    assert load_tail_manifest(tmp_path / "tail.json").model_id == m.model_id
