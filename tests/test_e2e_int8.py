"""The e2e benchmark's local-int8 row: the whole teacher through convert-head, run on the
device side with ai-edge-litert (benchmarks.e2e_int8), and how the report states it."""

from __future__ import annotations

import json
import time
import tomllib

import numpy as np
import pytest

from benchmarks import demo, e2e, e2e_int8


def test_padded_range_widens_and_straddles_zero():
    assert e2e_int8.padded_range(-4.0, 12.0) == pytest.approx((-8.0, 16.0))  # 25% of 16
    lo, hi = e2e_int8.padded_range(1.0, 3.0)  # all-positive logits still get a zero point
    assert lo < 0 < hi and hi == pytest.approx(3.5)
    with pytest.raises(e2e_int8.Int8Error, match="not a usable range"):
        e2e_int8.padded_range(2.0, 2.0)
    with pytest.raises(e2e_int8.Int8Error):
        e2e_int8.padded_range(float("nan"), 1.0)


def test_int8_model_gets_the_split_heads_thread_count(tmp_path):
    paths = demo.DemoPaths(tmp_path)
    cfg = demo.write_device_config(paths, "tcp://127.0.0.1:1", tmp_path / "h.tflite", 3)
    heads = tomllib.loads(cfg.read_text())["heads"]
    assert [h["num_threads"] for h in heads] == [e2e_int8.DEVICE_THREADS]


@pytest.fixture(scope="module")
def teacher():
    from benchmarks.e2e_cloud import load_teacher

    return load_teacher()


def _photos(n: int) -> list[dict]:
    from training.data.photos import shipped_photos

    photos = [p for p in shipped_photos(("foolbox",)) if p.label is not None][:n]
    if len(photos) < n:
        pytest.skip("foolbox photos not installed")
    return [{"path": str(p.path), "label": p.path.name, "label_id": int(p.label)} for p in photos]


def _pixels(items: list[dict]) -> np.ndarray:
    from hardware.preprocess import preprocess

    return np.concatenate([preprocess(e2e._frame_rgb(i["path"]), (224, 224)) for i in items])


def test_logits_map_is_the_teacher(teacher):
    """The exported form (Linear as a 1×1 conv on the pooled map) computes the same logits."""
    import torch

    from benchmarks.e2e_cloud import MEAN, STD

    x = e2e_int8._normalised(_pixels(_photos(2)), MEAN, STD)
    wrapped = e2e_int8.logits_map(teacher)
    with torch.inference_mode():
        want, got = teacher(x), wrapped(x)
    assert tuple(got.shape) == (2, 1000, 1, 1)
    assert torch.allclose(got.flatten(1), want, atol=1e-4)


def test_cache_key_follows_weights_and_calibration(teacher, tmp_path):
    import torch

    (tmp_path / "a.jpg").write_bytes(b"one")
    files = [tmp_path / "a.jpg"]
    key = e2e_int8.cache_key(teacher, files, 0.5, 0.5)
    assert e2e_int8.cache_key(teacher, files, 0.5, 0.5) == key  # deterministic
    (tmp_path / "a.jpg").write_bytes(b"two")
    assert e2e_int8.cache_key(teacher, files, 0.5, 0.5) != key  # other calibration photo
    (tmp_path / "a.jpg").write_bytes(b"one")
    with torch.no_grad():
        teacher._fc.bias[0] += 1.0
    try:
        assert e2e_int8.cache_key(teacher, files, 0.5, 0.5) != key  # other weights
    finally:
        with torch.no_grad():
            teacher._fc.bias[0] -= 1.0


def _summary_row(config: str, link: str | None, p50: float, top1: float, mj: float) -> dict:
    return {"config": config, "link": link, "latency_ms_p50": p50, "top1_accuracy": top1,
            "energy_total_mj": mj}  # fmt: skip


def test_report_says_when_the_int8_full_model_beats_the_split():
    rows = [
        _summary_row("local-int8", None, 15.0, 0.85, 60.0),
        _summary_row("split", "3G", 20.0, 0.65, 45.0),
        _summary_row("split", "WiFi", 12.0, 0.65, 38.0),
    ]
    result = {"rows": rows, "targets": {"3G": {}, "WiFi": {}}}
    lines = e2e.int8_verdict(result)
    g3 = next(ln for ln in lines if ln.startswith("- 3G"))
    wifi = next(ln for ln in lines if ln.startswith("- WiFi"))
    assert "beats the split" in g3 and "1.33" in g3
    assert "is slower than the split" in wifi
    assert e2e.int8_verdict({"rows": rows[1:], "targets": {"3G": {}}}) == []
    # a failed conversion is reported as such, not silently dropped
    assert (
        "not measured: boom"
        in e2e.int8_markdown({"int8_full_model": {"error": "not measured: boom"}})[-1]
    )


@pytest.mark.slow
def test_local_int8_converts_once_and_classifies_photos(tmp_path):
    """convert-head on the whole teacher (real onnx2tf + TFLiteConverter), cached on the second
    call; the device-side process (ai-edge-litert, no torch) scores real photos."""
    calib = tmp_path / "calib"
    demo.prepare_calibration_folder(calib)
    work = tmp_path / "work"
    model = e2e_int8.ensure_int8_teacher(work, calib)
    assert model.converted_now and model.tflite.is_file()
    lo, hi = model.output_range
    assert lo < model.calib_logit_range[0] and hi > model.calib_logit_range[1]
    info = model.describe()
    assert info["verification"]["cosine_min"] >= 0.99  # the converter's own gate held
    manifest = json.loads(model.manifest.read_text())
    assert manifest["output"]["shape"] == [1, 1, 1, 1000] and manifest["output"]["dtype"] == "int8"

    t0 = time.monotonic()
    again = e2e_int8.ensure_int8_teacher(work, calib)
    assert not again.converted_now and again.tflite == model.tflite
    assert time.monotonic() - t0 < 30  # no second conversion (that takes ~1 min)

    items = _photos(4)
    images = tmp_path / "images.json"
    images.write_text(json.dumps(items))
    rows = e2e_int8.run_device_process(images, model, 2, tmp_path / "rows.jsonl")
    assert [r["path"] for r in rows] == [i["path"] for i in items]
    for r in rows:
        assert r["threads"] == 2 and r["bytes"] == 0
        assert r["preprocess_ms"] > 0 and r["model_ms"] > 0
        assert r["latency_ms"] == pytest.approx(r["preprocess_ms"] + r["model_ms"])

    from benchmarks.e2e_cloud import classify, load_teacher

    float_model = load_teacher()
    px = _pixels(items)
    teacher_top1 = {i["path"]: classify(float_model, px[k])[0] for k, i in enumerate(items)}
    s = e2e.summarize_config("local-int8", rows, None, teacher_top1, busy_w=3.5, speedup=30)
    assert s["config"] == "local-int8" and s["link"] is None and s["frames"] == 4
    assert s["top1_agreement_with_teacher"] >= 0.75  # int8 keeps the float model's answers
    assert s["top1_accuracy"] >= 0.75
    assert s["energy_compute_mj"] == pytest.approx(3.5 * s["device_compute_ms_p50"])
    assert s["energy_radio_mj"] == 0.0
