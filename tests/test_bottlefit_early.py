"""BottleFit at early cuts on real photos: the held-out rule, resumable stages, a tiny run.

The ImageNet-sample folder is stood in for by a folder made here from the shipped
scikit-image/scikit-learn photos under synset-style names, so the real loading, split,
crop, cache and checkpoint code runs without the (uncommittable) ImageNet photos; one test
also checks the real folder when it is present.
"""

from __future__ import annotations

import pytest
from support.interrupt import Killed, killed_after

torch = pytest.importorskip("torch")

from training.bottlefit import (  # noqa: E402
    BottleFitConfig,
    BottleFitJob,
    StageCheckpoint,
    run_bottlefit,
    stage1_head_distillation,
    teacher_prefix,
)
from training.bottlefit_data import imagenet_sample_photos_split  # noqa: E402
from training.compressor import CodecConfig  # noqa: E402
from training.data.imagenet_sample import (  # noqa: E402
    imagenet_sample_root,
    imagenet_sample_split,
    is_heldout,
)


def make_sample_folder(root, n: int = 14):
    """``n`` real photos named ``<synset>_<name>.JPEG`` + a sorted synsets.txt (30 synsets)."""
    from PIL import Image

    from training.data.photos import shipped_photos

    photos = shipped_photos(("skimage", "sklearn"))
    if len(photos) < 2:
        pytest.skip("shipped photos not installed (scikit-image / scikit-learn)")
    root.mkdir(parents=True, exist_ok=True)
    synsets = [f"n{i:08d}" for i in range(30)]
    (root / "synsets.txt").write_text("\n".join(synsets) + "\n")
    for k in range(n):
        with Image.open(photos[k % len(photos)].path) as img:
            img = img.convert("RGB")
            if k >= len(photos):
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            img.save(root / f"{synsets[2 * k]}_photo{k}.JPEG", quality=90)
    return root


def test_heldout_rule_splits_by_sorted_position(tmp_path):
    root = make_sample_folder(tmp_path / "sample")
    train, held = imagenet_sample_photos_split(root)
    names = sorted(p.name for p in root.glob("*.JPEG"))
    assert [p.path.name for p in held] == [names[i] for i in (0, 3, 7, 10)]
    assert len(train) == 10
    assert not {p.path for p in train} & {p.path for p in held}
    # BottleFit's photos are the evaluation protocol's own split, not a second copy of the rule
    assert ([(p.path, p.label) for p in train], [(p.path, p.label) for p in held]) == (
        imagenet_sample_split(root)
    )
    # label = the synset's 0-based line in synsets.txt (files use every other synset)
    assert all(p.label == 2 * int(p.path.name.split("_photo")[1].split(".")[0]) for p in train)
    assert [i for i in range(700) if is_heldout(i)][:4] == [0, 3, 7, 10]
    assert sum(is_heldout(i) for i in range(700)) == 200


def test_missing_sample_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"synsets.txt not found.*--imagenet-root"):
        imagenet_sample_photos_split(tmp_path)


def test_real_imagenet_sample_is_500_train_200_heldout():
    root = imagenet_sample_root()
    if not (root / "synsets.txt").is_file():
        pytest.skip(f"ImageNet sample not present at {root} (a fresh clone has none)")
    train, held = imagenet_sample_photos_split(root)
    assert (len(train), len(held)) == (500, 200)
    assert not {p.path for p in train} & {p.path for p in held}
    assert all(0 <= p.label < 1000 for p in train + held)


def _teacher():
    from training.models import create_model

    try:
        return create_model("efficientnet_lite0", pretrained=True).eval()
    except (FileNotFoundError, ImportError) as exc:
        pytest.skip(f"EfficientNet-Lite0 weights not installed: {exc}")


def _stage2_feats(teacher, n: int = 16):
    """Features after stage2 (24 channels) of ``n`` augmented 64² crops of shipped photos."""
    from training.bottlefit import CropJitter
    from training.data.photos import PhotoCrops

    ds = PhotoCrops(
        lambda s: CropJitter((64, 64), teacher.mean, teacher.std, s), 2, 0, ("skimage", "sklearn")
    )
    x = torch.stack([ds[i][0] for i in range(n)])
    with torch.no_grad():
        return teacher_prefix(teacher, "stage2")(x)


def test_early_cut_stage1_loss_falls_and_a_killed_run_resumes_exactly(tmp_path, torch_one_thread):
    from training.bottlefit import make_compressor
    from training.bottleneck import split_model

    teacher = _teacher()
    feats = _stage2_feats(teacher)
    cfg = BottleFitConfig(stage1_epochs=6, stage2_epochs=0, batch_size=8, stage1_lr=3e-2)

    def fresh():
        torch.manual_seed(0)
        head, tail = split_model(teacher, "stage2", 4, 2, input_size=(64, 64))
        for p in (*head.parameters(), *tail.parameters()):
            p.requires_grad_(True)
        return head, tail, make_compressor(head, CodecConfig("zstd", 1, {}))

    head, tail, comp = fresh()
    whole = stage1_head_distillation(head, tail, comp, feats, cfg)
    assert len(whole.losses) == 6
    # the bottleneck learns to restore (12 steps; measured 172.6 -> 160.9 after 6 epochs)
    assert whole.losses[-1] < 0.97 * whole.losses[0]
    assert whole.losses == sorted(whole.losses, reverse=True)

    ckpt = StageCheckpoint(tmp_path / "stage1.pt")
    h2, t2, c2 = fresh()
    with pytest.raises(Killed):
        stage1_head_distillation(h2, t2, c2, feats, cfg, killed_after(3), checkpoint=ckpt)
    assert torch.load(ckpt.path, weights_only=False)["epoch"] == 3
    h3, t3, c3 = fresh()  # a new process: fresh weights, the checkpoint on disk
    resumed = stage1_head_distillation(h3, t3, c3, feats, cfg, checkpoint=ckpt)
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-5)
    for a, b in zip(
        head.reduction.state_dict().values(), h3.reduction.state_dict().values(), strict=True
    ):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)
    # a checkpoint from another schedule is refused, not silently mixed in
    with pytest.raises(ValueError, match="checkpoint was written for 6 epochs"):
        stage1_head_distillation(*fresh(), feats, BottleFitConfig(stage1_epochs=5), checkpoint=ckpt)


def test_tiny_imagenet_sample_run_trains_caches_and_never_sees_heldout(tmp_path, monkeypatch):
    from training.data.photos import shipped_photos

    if not [p for p in shipped_photos(("foolbox",)) if p.label is not None]:
        pytest.skip("foolbox's labelled samples not installed (evaluation set)")
    _teacher()
    root = make_sample_folder(tmp_path / "sample")
    job = BottleFitJob(
        after="stage3",
        channels=4,
        stride=2,
        codec=CodecConfig("zstd", 1, {}),
        train_crops=2,
        mixed_crops=1,
        sources=("imagenet-sample",),
        input_size=64,
        threads=1,
        progress=False,
        imagenet_root=str(root),
        run_dir=str(tmp_path / "run"),
        half_features=True,
        fit=BottleFitConfig(
            stage1_epochs=3,
            stage2_epochs=1,
            batch_size=8,
            stage1_lr=3e-2,
            stage2_train="bottleneck",
        ),
    )
    r = run_bottlefit(job, naive_baseline=False)
    m = r.metrics
    train, held = imagenet_sample_photos_split(root)
    assert {p.path for p in r.plain_crops.photos} == {p.path for p in train}
    assert not {p.path for p in r.plain_crops.photos} & {p.path for p in held}
    assert m["data"]["train_crops"] == 20 and m["data"]["mixed_crops"] == 10
    assert r.feats.dtype == torch.float16 and len(r.feats) == 30
    b = m["bottlefit"]
    assert b["heldout_n"] == 4 and 0.0 <= b["heldout_top5"] <= 1.0
    assert b["heldout_top1"] <= b["heldout_top5"]
    assert b["heldout_top1_loss_pts"] == pytest.approx(
        100 * (b["heldout_teacher_top1"] - b["heldout_top1"])
    )
    from training.commands.bottlefit import readme_text

    naive = m["after_stage1"]  # the CLI always scores naive insertion; this run skipped it
    readme = readme_text(
        "splitfit-train bottlefit", {**m, "model_id": "0" * 64, "naive_insertion": naive}
    )
    assert "the 4 held-out ImageNet-sample photos (board view)" in readme
    assert "## Held-out ImageNet photos" in readme and "colour photos" not in readme
    losses = m["history"]["stage1_head_distillation"]
    assert losses[-1] < losses[0]
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "run").glob("*.pt")) == [
        "ckpt",
        "ckpt",
        "teacher",
    ]

    # the same job again: the teacher cache and both finished stages are reused as they are
    def no_teacher(*a, **k):
        raise AssertionError("the teacher ran again although its outputs are cached")

    monkeypatch.setattr("training.bottlefit.run.cache_teacher", no_teacher)
    again = run_bottlefit(job, naive_baseline=False).metrics
    assert again["bottlefit"] == b
    assert again["history"] == m["history"]


def test_run_key_is_stable_so_earlier_checkpoints_and_caches_stay_valid():
    """Checkpoints and teacher caches are found by these hashes: a new knob left at its
    "off" value (e.g. rate_weight 0) must not change them, or a rerun silently starts over."""
    job = BottleFitJob()
    assert job.key() == "c061690e9f5bb7d4"
    assert job.key(data_only=True) == BottleFitJob(
        channels=99, fit=BottleFitConfig(stage1_epochs=1)
    ).key(data_only=True)
    assert BottleFitJob(channels=99).key() != job.key()
