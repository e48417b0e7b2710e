"""BottleFit's two stages on the synthetic dataset (fast, real wire codec in the loop)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from training.bottlefit import (
    BottleFitConfig,
    cache_teacher,
    frozen_copy,
    jitter,
    kd_loss,
    make_compressor,
    stage1_head_distillation,
    stage2_finetune,
    state_fingerprint,
    wire_tensors,
)
from training.bottleneck import split_model
from training.compressor import CodecConfig
from training.data.synthetic import SyntheticShapes
from training.export import export_split
from training.models import create_model


def fresh_split(seed: int, n: int, codec: CodecConfig):
    """A synthetic set, a fixed teacher, its cached outputs and an untrained split of it."""
    torch.manual_seed(seed)
    ds = SyntheticShapes(n=n, size=32, num_classes=4, seed=seed)
    teacher = frozen_copy(create_model("resnet_small", num_classes=4))
    # Distillation needs no good teacher: any fixed network defines the targets.
    feats, logits, labels = cache_teacher(teacher, "rb2", DataLoader(ds, batch_size=32))
    head, tail = split_model(teacher, "rb2", channels=2, stride=2, input_size=(32, 32))
    for p in (*head.parameters(), *tail.parameters()):
        p.requires_grad_(True)
    comp = make_compressor(head, codec)
    return ds, teacher, feats, logits, labels, head, tail, comp


@pytest.fixture(scope="module")
def setup():
    return fresh_split(0, 96, CodecConfig("jpeg", 8, {"quality": 80}))


def test_cache_teacher_matches_teacher_forward(setup):
    ds, teacher, feats, logits, labels, *_ = setup
    x = torch.stack([ds[i][0] for i in range(4)])
    with torch.no_grad():
        assert torch.allclose(teacher(x), logits[:4], atol=1e-5)
    assert feats.shape[0] == len(ds) == logits.shape[0] == labels.shape[0]


def test_stage1_loss_drops_teacher_unchanged_only_bottleneck_trains(setup):
    _ds, teacher, feats, _logits, _labels, head, tail, comp = setup
    before_teacher = state_fingerprint(teacher)
    body_before = state_fingerprint(head.body)
    tail_body_before = state_fingerprint(tail.body)
    cls_before = state_fingerprint(tail.classifier)
    red_before = state_fingerprint(head.reduction)
    rest_before = state_fingerprint(tail.restoration)
    cfg = BottleFitConfig(stage1_epochs=12, batch_size=16, stage1_lr=1e-2)
    hist = stage1_head_distillation(head, tail, comp, feats, cfg)
    assert len(hist.losses) == 12
    assert hist.losses[-1] < 0.6 * hist.losses[0], hist.losses
    np.testing.assert_array_equal(state_fingerprint(teacher), before_teacher)
    np.testing.assert_array_equal(state_fingerprint(head.body), body_before)
    np.testing.assert_array_equal(state_fingerprint(tail.body), tail_body_before)
    np.testing.assert_array_equal(state_fingerprint(tail.classifier), cls_before)
    assert not np.array_equal(state_fingerprint(head.reduction), red_before)
    assert not np.array_equal(state_fingerprint(tail.restoration), rest_before)


def test_stage2_loss_drops_and_head_stays_frozen(setup):
    _ds, _teacher, feats, logits, labels, head, tail, comp = setup
    head_before = state_fingerprint(head)
    wire = wire_tensors(head, comp, feats)
    cfg = BottleFitConfig(stage2_epochs=8, batch_size=16, stage2_lr=3e-3, kd_weight=0.5)
    hist = stage2_finetune(tail, wire, logits, labels, cfg)
    assert hist.losses[-1] < 0.8 * hist.losses[0], hist.losses
    np.testing.assert_array_equal(state_fingerprint(head), head_before)


def test_stage2_restoration_only_keeps_teacher_tail_frozen(setup):
    """The shipped recipe (--stage2-train restoration): only the restoration unit moves, so
    the server tail stays the ImageNet teacher's and cannot overfit the few training photos."""
    _ds, _teacher, feats, logits, labels, head, tail, comp = setup
    body_before = state_fingerprint(tail.body)
    cls_before = state_fingerprint(tail.classifier)
    rest_before = state_fingerprint(tail.restoration)
    wire = wire_tensors(head, comp, feats)
    cfg = BottleFitConfig(
        stage2_epochs=4, batch_size=16, stage2_lr=3e-3, stage2_train="restoration"
    )
    stage2_finetune(tail, wire, logits, labels, cfg)
    np.testing.assert_array_equal(state_fingerprint(tail.body), body_before)
    np.testing.assert_array_equal(state_fingerprint(tail.classifier), cls_before)
    assert not np.array_equal(state_fingerprint(tail.restoration), rest_before)


def test_stage2_bottleneck_trains_reduction_and_restoration_only(setup):
    """--stage2-train bottleneck: KD reaches the device-side reduction through the codec's
    straight-through gradient; head body and teacher tail stay untouched; loss goes down."""
    _ds, _teacher, feats, logits, labels, head, tail, comp = setup
    frozen = [state_fingerprint(m) for m in (head.body, tail.body, tail.classifier)]
    red_before = state_fingerprint(head.reduction)
    rest_before = state_fingerprint(tail.restoration)
    cfg = BottleFitConfig(stage2_epochs=6, batch_size=16, stage2_lr=3e-3, stage2_train="bottleneck")
    with pytest.raises(ValueError, match="needs the head"):
        stage2_finetune(tail, feats, logits, labels, cfg)
    hist = stage2_finetune(tail, feats, logits, labels, cfg, head=head, compressor=comp)
    assert hist.losses[-1] < hist.losses[0]
    for before, m in zip(frozen, (head.body, tail.body, tail.classifier), strict=True):
        np.testing.assert_array_equal(state_fingerprint(m), before)
    assert not np.array_equal(state_fingerprint(head.reduction), red_before)
    assert not np.array_equal(state_fingerprint(tail.restoration), rest_before)


def test_wire_noise_is_bounded_random_and_off_at_zero():
    z = torch.full((2, 3, 4, 4), 3.0)
    assert jitter(z, 0.0) is z
    a, b = jitter(z, 0.05), jitter(z, 0.05)
    assert not torch.equal(a, b) and not torch.equal(a, z)
    assert float((a - z).abs().max()) <= 0.05
    with pytest.raises(ValueError, match="wire_noise"):
        BottleFitConfig(wire_noise=-0.1)


def test_stage1_with_wire_noise_still_learns():
    """Noise before the codec must not stop head distillation from fitting."""
    _ds, _teacher, feats, _, _, head, tail, comp = fresh_split(1, 64, CodecConfig("zstd", 2, {}))
    cfg = BottleFitConfig(stage1_epochs=10, batch_size=16, stage1_lr=1e-2, wire_noise=0.2)
    hist = stage1_head_distillation(head, tail, comp, feats, cfg)
    assert hist.losses[-1] < 0.8 * hist.losses[0], hist.losses


def test_kd_loss_zero_when_matching_and_uses_labels():
    t = torch.randn(5, 4)
    y = torch.tensor([0, 1, -1, 2, 3])
    assert float(kd_loss(t, t, y, 2.0, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(t, t, y, 2.0, 0.5)) > 0.1  # CE half remains on labelled rows
    assert float(kd_loss(t, t, torch.full((5,), -1), 2.0, 0.5)) == pytest.approx(0.0, abs=1e-6)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="temperature"):
        BottleFitConfig(temperature=0)
    with pytest.raises(ValueError, match="kd_weight"):
        BottleFitConfig(kd_weight=1.5)
    with pytest.raises(ValueError, match="stage2_train"):
        BottleFitConfig(stage2_train="everything")


def test_export_loads_in_fresh_process(setup, tmp_path):
    ds, _teacher, _feats, _logits, _labels, head, tail, _comp = setup
    exported = export_split(
        head,
        tail,
        tmp_path,
        labels=list(ds.labels),
        mean=ds.mean,
        std=ds.std,
        codec=CodecConfig("jpeg", 8, {"quality": 80}),
        extra={"training": "bottlefit"},
    )
    x = ds[0][0].unsqueeze(0)
    with torch.no_grad():
        expected = tail(head(x)).argmax(1).item()
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import json, sys, torch\n"
        f"d = {str(tmp_path)!r}\n"
        "h = torch.jit.load(d + '/head.pt'); t = torch.jit.load(d + '/tail.pt')\n"
        "m = json.load(open(d + '/tail.json'))\n"
        "x = torch.load(d + '/x.pt')\n"
        "print(m['model_id'], int(t(h(x)).argmax(1)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    model_id, pred = out.stdout.split()
    assert model_id == exported.model_id
    assert int(pred) == expected


def test_stage1_deeper_target_trains_first_tail_segment_only():
    torch.manual_seed(1)
    ds = SyntheticShapes(n=48, size=32, num_classes=4, seed=1)
    teacher = frozen_copy(create_model("resnet_small", num_classes=4))
    feats, _, _ = cache_teacher(teacher, "rb1", DataLoader(ds, batch_size=48))
    head, tail = split_model(teacher, "rb1", channels=4, stride=1, input_size=(32, 32))
    for p in (*head.parameters(), *tail.parameters()):
        p.requires_grad_(True)
    seg0, seg1 = state_fingerprint(tail.body[0]), state_fingerprint(tail.body[1])
    before_teacher = state_fingerprint(teacher)
    cfg = BottleFitConfig(stage1_epochs=6, batch_size=16, stage1_lr=1e-2, distill_depth=1)
    hist = stage1_head_distillation(head, tail, make_compressor(head, None), feats, cfg)
    assert hist.losses[-1] < hist.losses[0], hist.losses
    assert not np.array_equal(state_fingerprint(tail.body[0]), seg0)
    np.testing.assert_array_equal(state_fingerprint(tail.body[1]), seg1)
    np.testing.assert_array_equal(state_fingerprint(teacher), before_teacher)
    with pytest.raises(ValueError, match="distill_depth"):
        stage1_head_distillation(
            head, tail, make_compressor(head, None), feats,
            BottleFitConfig(distill_depth=len(tail.body) + 1),
        )  # fmt: skip


@pytest.mark.slow  # each case starts a fresh interpreter that imports torch (~20 s loaded)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--after", "stage99"], "unknown split point"),
        (["--temperature", "0"], "temperature"),
        (["--quality", "0"], "quality"),
        (["--dead-leaves", "-1"], "dead_leaves must be >= 0"),
    ],
)
def test_cli_bad_input_exits_with_one_line(args, message, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.cli",
            "bottlefit",
            "--no-progress",
            "--out",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "tail.pt").exists()
