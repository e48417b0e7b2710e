"""BottleFit comparisons: the labelled three-way run (CLI, synthetic data), the ImageNet
benchmark's baselines (on resnet_small), and the merging results writer."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from benchmarks.bottlefit import build_parser, imagenet_section, job_from_args, train_kd_budget
from training.bottlefit import cache_teacher, frozen_copy, make_compressor
from training.bottlefit_report import load_results, write_section
from training.bottleneck import split_model
from training.cli import main as cli_main
from training.compressor import CodecConfig
from training.data.synthetic import SyntheticShapes
from training.models import create_model

FLAT_IMAGENET = {  # the pre-section layout of bottlefit.json (a flat ImageNet result)
    "benchmark": "bottlefit",
    "spec": {"after": "stage6", "channels": 56, "stride": 1},
    "codec": {"name": "zstd", "bits": 2, "params": {}},
    "bytes": {"wire_mean": 634.0, "jpeg_q85_mean": 15248.0, "ratio_vs_jpeg_q85": 0.042},
    "teacher": {"eval_top1": 0.95, "n_eval": 20},
    "methods": {
        "bottlefit": {
            "heldout_top1_agreement": 0.64,
            "heldout_kl_nats": 0.24,
            "eval_top1": 0.3,
            "eval_top1_agreement": 0.3,
            "eval_kl_nats": 2.9,
        }
    },
    "not_run": ["no_distillation", "scratch"],
    "timing_s": {"stage1": 56.0, "stage2": 168.0},
}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """One tiny end-to-end `splitfit-train bottlefit --dataset synthetic` into a results
    folder that already holds an old flat ImageNet result."""
    out = tmp_path_factory.mktemp("results")
    (out / "bottlefit.json").write_text(json.dumps(FLAT_IMAGENET))
    rc = cli_main(
        [
            "bottlefit",
            "--dataset", "synthetic",
            "--limit-train", "192",
            "--limit-test", "64",
            "--teacher-epochs", "3",
            "--stage1-epochs", "3",
            "--stage2-epochs", "3",
            "--batch-size", "32",
            "--codec", "raw",
            "--bits", "4",
            "--results", str(out),
            "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    return out, json.loads((out / "bottlefit.json").read_text())


def test_labelled_run_writes_every_method_with_curves(synthetic_run):
    out, doc = synthetic_run
    s = doc["synthetic"]
    assert list(s["methods"]) == ["naive_insertion", "scratch", "bottlefit"]
    assert s["spec"]["after"] == "rb1" and s["spec"]["channels"] == 2  # the recipe's defaults
    assert s["codec"] == {"name": "raw", "bits": 4, "params": {}}  # explicit flags win
    assert s["data"]["train_size"] == 192 and s["data"]["val_size"] == 64
    assert "--dataset synthetic" in s["command"] and "--codec raw" in s["command"]
    assert s["job"]["fit"]["distill_depth"] == 2  # recipe value for a flag not given
    for name, m in s["methods"].items():
        # epoch 0 + 3 + 3 epochs for every method: "--stage2-epochs 3" equals the ImageNet
        # parser default and must still count as given (not be replaced by the recipe's 2)
        assert len(m["curve"]) == 1 + 6, name
        assert all(0.0 <= a <= 1.0 for a in m["curve"]) and m["test_top1"] == m["curve"][-1]
        assert m["train_s"] > 0 and m["bytes_mean"] > 0
    # raw 4-bit payload of a 2x8x8 bottleneck: exactly 2*8*8*4/8 bytes
    c, h, w = s["spec"]["bottleneck_chw"]
    assert s["methods"]["bottlefit"]["bytes_mean"] == c * h * w * 4 / 8
    md = (out / "bottlefit.md").read_text()
    assert "## Synthetic shapes" in md and "naive_insertion" in md
    assert (out / "bottlefit.png").stat().st_size > 1000


def test_labelled_run_training_losses_go_down(synthetic_run):
    _, doc = synthetic_run
    m = doc["synthetic"]["methods"]
    for name in ("naive_insertion", "scratch"):
        losses = m[name]["train_loss"]
        assert losses[-1] < losses[0], (name, losses)
    bf = m["bottlefit"]
    assert bf["stage1_loss"][-1] < bf["stage1_loss"][0], bf["stage1_loss"]
    assert bf["stage2_loss"][-1] < bf["stage2_loss"][0], bf["stage2_loss"]


def test_writer_keeps_the_other_section(synthetic_run):
    out, doc = synthetic_run
    assert doc["imagenet"]["methods"] == FLAT_IMAGENET["methods"]  # migrated, not destroyed
    write_section(out, "imagenet", {**FLAT_IMAGENET, "command": "x"})
    again = load_results(out)
    assert set(again) == {"imagenet", "synthetic"}
    assert again["synthetic"] == doc["synthetic"]
    assert "## ImageNet" in (out / "bottlefit.md").read_text()
    s = doc["synthetic"]
    reps = [
        {"seed": k, "teacher": 0.5, "methods": {n: 0.25 * k for n in s["methods"]}} for k in (1, 3)
    ]
    write_section(out, "synthetic", {**s, "replicates": reps})
    assert "| mean | 50.00% | 50.00% | 50.00% | 50.00% |" in (out / "bottlefit.md").read_text()
    with pytest.raises(ValueError, match="unknown section"):
        write_section(out, "cifar", {})


def test_cli_rejects_negative_limit(tmp_path, capsys):
    rc = cli_main(["bottlefit", "--dataset", "synthetic", "--limit-train", "-1"])
    assert rc == 2
    assert "--limit-train" in capsys.readouterr().err


def test_cli_bad_split_fails_before_training(tmp_path, capsys):
    args = ["bottlefit", "--dataset", "synthetic", "--after", "stage4", "--results", str(tmp_path)]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "unknown split point 'stage4'" in err and '"event":"epoch"' not in err
    assert not (tmp_path / "bottlefit.json").exists()


@pytest.fixture(scope="module")
def kd_setup():
    torch.manual_seed(0)
    ds = SyntheticShapes(n=96, size=32, num_classes=4, seed=0)
    teacher = frozen_copy(create_model("resnet_small", num_classes=4))
    feats, logits, _ = cache_teacher(teacher, "rb2", DataLoader(ds, batch_size=32))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    return teacher, feats, logits, x


@pytest.mark.parametrize("stage2_train", ["restoration", "tail"])
def test_no_distillation_baseline_loss_drops_and_trains_only_what_stage2_would(
    kd_setup, stage2_train
):
    teacher, feats, logits, _ = kd_setup
    head, tail = split_model(teacher, "rb2", channels=2, stride=2, input_size=(32, 32))
    comp = make_compressor(head, CodecConfig("zstd", 4, {}))
    body_before = [p.clone() for p in head.body.parameters()]
    cls_before = [p.clone() for p in tail.classifier.parameters()]
    r = train_kd_budget(
        head, tail, comp, feats, logits, 120.0, lr=3e-3, batch=32, from_feats=True,
        stage2_train=stage2_train, max_steps=45,
    )  # fmt: skip
    assert r["steps"] == 45
    assert r["final_loss"] < r["first_loss"], r["loss_per_pass"]
    assert all(torch.equal(a, b) for a, b in zip(body_before, head.body.parameters(), strict=True))
    cls_same = all(
        torch.equal(a, b) for a, b in zip(cls_before, tail.classifier.parameters(), strict=True)
    )
    assert cls_same == (stage2_train == "restoration")


def test_scratch_baseline_loss_drops(kd_setup):
    _, _, logits, x = kd_setup
    torch.manual_seed(1)
    head, tail = split_model(
        create_model("resnet_small", num_classes=4), "rb2", 2, 2, input_size=(32, 32)
    )
    comp = make_compressor(head, CodecConfig("zstd", 4, {}))
    r = train_kd_budget(
        head, tail, comp, x, logits, 120.0, lr=3e-3, batch=32, from_feats=False, max_steps=45
    )
    assert r["final_loss"] < r["first_loss"], r["loss_per_pass"]


def test_benchmark_takes_the_artifact_recipe_flags(tmp_path):
    args = build_parser().parse_args(
        [
            "--after",
            "stage6",
            "--channels",
            "56",
            "--stride",
            "1",
            "--codec",
            "zstd",
            "--bits",
            "2",
            "--train-crops",
            "48",
            "--stage1-epochs",
            "100",
            "--stage2-epochs",
            "30",
            "--stage1-lr",
            "0.01",
            "--stage2-lr",
            "0.001",
            "--stage2-train",
            "restoration",
            "--threads",
            "1",
            "--sources",
            "skimage,sklearn,matplotlib",
        ]
    )
    job = job_from_args(args)
    assert job.sources == ("skimage", "sklearn", "matplotlib")
    assert (job.after, job.channels, job.stride, job.train_crops) == ("stage6", 56, 1, 48)
    assert job.codec == CodecConfig("zstd", 2, {})
    assert job.fit.stage2_train == "restoration" and job.fit.stage1_epochs == 100
    assert job.fit.stage2_lr == 0.001 and job.threads == 1


def test_imagenet_section_through_the_writer_has_the_keys(tmp_path):
    m = {
        **FLAT_IMAGENET,
        "job": {"codec": FLAT_IMAGENET["codec"], "threads": 1},
        "data": {"train_crops": 8},
    }
    methods = dict(FLAT_IMAGENET["methods"])
    methods["no_distillation"] = methods["scratch"] = methods["bottlefit"]
    runs = {k: {"wall_s": 1.0, "steps": 3} for k in methods}
    section = imagenet_section(m, methods, runs=runs, command="python -m benchmarks.bottlefit")
    doc = write_section(tmp_path, "imagenet", section)
    got = json.loads((tmp_path / "bottlefit.json").read_text())
    assert got == json.loads(json.dumps(doc))
    im = got["imagenet"]
    for key in ("spec", "codec", "bytes", "teacher", "methods", "runs", "timing_s", "command"):
        assert key in im, key
    assert set(im["methods"]) == {"bottlefit", "no_distillation", "scratch"}
    assert "not_run" not in im
    md = (tmp_path / "bottlefit.md").read_text()
    assert "| no_distillation |" in md and "| scratch |" in md


def test_imagenet_dispatch_strips_default_marks():
    from training.cli import build_parser as cli_parser
    from training.commands.bottlefit_dataset import dispatch, is_default

    args = cli_parser().parse_args(["bottlefit", "--channels", "8"])
    assert is_default(args.after) and not is_default(args.channels)
    assert dispatch(args) is None  # ImageNet: the caller goes on
    assert type(args.after) is str and type(args.stride) is int and args.channels == 8
