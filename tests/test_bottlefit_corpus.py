"""BottleFit's ``debian-corpus`` source: the `make photos` corpus as unlabelled KD input.

CI clones have no corpus (it is ~600 MB of Debian packages, git-ignored), so the wiring is
tested on a tiny corpus written here (real PNGs + a manifest with licences); one test also
checks the real ``vendor/photos`` when it is present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from training.bottlefit import BottleFitConfig, BottleFitJob, CropJitter, run_bottlefit  # noqa: E402
from training.bottlefit_data import (  # noqa: E402
    corpus_crops,
    corpus_summary,
    shipped_sources,
)
from training.compressor import CodecConfig  # noqa: E402
from training.data.corpus import CorpusMissing, corpus_root  # noqa: E402

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def jitter(seed: int) -> CropJitter:
    return CropJitter((64, 64), MEAN, STD, seed=seed)


def fake_corpus(root: Path) -> Path:
    """3 noise scenes (CC0, package p) + 1 alpha cut-out (GPL-2, package q) + manifest."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(3):
        px = np.random.default_rng(i).integers(0, 256, (90, 120, 3), np.uint8)
        Image.fromarray(px).save(root / f"scene{i}.png")
        rows.append({"file": f"scene{i}.png", "package": "p", "licence": "CC0", "kind": "scene"})
    cut = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    cut.paste(Image.new("RGBA", (30, 20), (250, 0, 250, 255)), (15, 10))
    cut.save(root / "cut.png")
    rows.append({"file": "cut.png", "package": "q", "licence": "GPL-2", "kind": "cutout"})
    (root / "manifest.json").write_text(json.dumps({"count": len(rows), "photos": rows}))
    return root


def test_corpus_crops_are_unlabelled_and_summarised_by_licence_and_package(tmp_path):
    ds = corpus_crops(jitter, 2, seed=4, root=fake_corpus(tmp_path / "photos"))
    assert len(ds) == 8
    items = [ds[i] for i in range(len(ds))]
    assert all(y == -1 for _, y in items)  # KD only: the teacher's outputs are the targets
    assert all(x.shape == (3, 64, 64) for x, _ in items)
    assert not torch.equal(items[0][0], items[1][0])  # two different crops of one photo
    assert corpus_summary(ds) == {
        "photos": 4,
        "scenes": 3,
        "cutouts": 1,
        "crops": 8,
        "licences": {"CC0": 3, "GPL-2": 1},
        "packages": {"p": 3, "q": 1},
    }


def test_absent_corpus_says_run_make_photos(tmp_path):
    with pytest.raises(CorpusMissing, match=r"manifest.json not found: run `make photos`"):
        corpus_crops(jitter, 1, seed=0, root=tmp_path)


def test_unknown_source_fails_naming_the_known_ones():
    assert shipped_sources(("imagenet-sample", "debian-corpus", "skimage")) == ("skimage",)
    with pytest.raises(
        ValueError, match=r"unknown photo source\(s\) \['debain-corpus'\].*debian-corpus"
    ):
        shipped_sources(("imagenet-sample", "debain-corpus"))


def test_corpus_knobs_change_the_cache_key_only_when_the_corpus_is_read():
    base = BottleFitJob()
    assert BottleFitJob(corpus_crops=3).key(data_only=True) == base.key(data_only=True)
    with_corpus = BottleFitJob(sources=("skimage", "debian-corpus"))
    assert with_corpus.key(data_only=True) != base.key(data_only=True)
    more = BottleFitJob(sources=("skimage", "debian-corpus"), corpus_crops=2)
    assert more.key(data_only=True) != with_corpus.key(data_only=True)
    with pytest.raises(ValueError, match="corpus_crops must be >= 1"):
        BottleFitJob(corpus_crops=0)


def test_explicit_command_records_the_corpus_flags():
    from training.commands.bottlefit import add_arguments, explicit_command

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--sources", "imagenet-sample,debian-corpus", "--corpus-crops", "2"])
    assert "--sources imagenet-sample,debian-corpus" in explicit_command(args)
    assert "--corpus-crops 2" in explicit_command(args)
    plain = p.parse_args(["--sources", "imagenet-sample"])
    assert "--corpus-crops" not in explicit_command(plain)


def _teacher_or_skip():
    from training.models import create_model

    try:
        create_model("efficientnet_lite0", pretrained=True)
    except (FileNotFoundError, ImportError) as exc:
        pytest.skip(f"EfficientNet-Lite0 weights not installed: {exc}")


def test_tiny_run_trains_on_the_corpus_as_kd_rows_and_lists_its_licences(tmp_path):
    from training.data.photos import shipped_photos

    if not [p for p in shipped_photos(("foolbox",)) if p.label is not None]:
        pytest.skip("foolbox's labelled samples not installed (evaluation set)")
    if len(shipped_photos(("skimage",))) < 2:
        pytest.skip("scikit-image's photos not installed")
    _teacher_or_skip()
    root = fake_corpus(tmp_path / "photos")
    job = BottleFitJob(
        after="stage3",
        channels=4,
        stride=2,
        codec=CodecConfig("zstd", 1, {}),
        train_crops=1,
        sources=("skimage", "debian-corpus"),
        corpus_crops=2,
        corpus_root=str(root),
        heldout_crops=1,
        input_size=64,
        threads=1,
        progress=False,
        half_features=True,
        fit=BottleFitConfig(
            stage1_epochs=2, stage2_epochs=1, batch_size=8, stage2_train="bottleneck"
        ),
    )
    r = run_bottlefit(job, naive_baseline=False)
    m = r.metrics
    n_plain = len(r.plain_crops)
    assert len(r.feats) == n_plain + 8  # 4 corpus photos x 2 crops after the plain crops
    assert (r.labels[n_plain:] == -1).all()
    assert m["data"]["mixed_crops"] == 0 and m["data"]["sources_train"] == [
        "skimage",
        "debian-corpus",
    ]
    assert m["data"]["debian_corpus"]["licences"] == {"CC0": 3, "GPL-2": 1}
    from training.commands.bottlefit import readme_text

    readme = readme_text(
        "splitfit-train bottlefit",
        {**m, "model_id": "0" * 64, "naive_insertion": m["after_stage1"]},
    )
    assert "## Debian photo corpus" in readme
    assert "photos from skimage (Debian corpus inputs: below)" in readme
    assert "Photos per licence: CC0 3, GPL-2 1." in readme
    assert "Photos per package: p 3, q 1." in readme


def test_corpus_only_sources_ask_for_a_photo_set(tmp_path):
    _teacher_or_skip()
    job = BottleFitJob(sources=("debian-corpus",), corpus_root=str(fake_corpus(tmp_path)))
    with pytest.raises(ValueError, match="name a photo set besides debian-corpus"):
        run_bottlefit(job, naive_baseline=False)


def test_real_corpus_when_fetched():
    root = corpus_root()
    if not (root / "manifest.json").is_file():
        pytest.skip(f"Debian photo corpus not fetched at {root} (run `make photos`)")
    ds = corpus_crops(jitter, 1, seed=0)
    s = corpus_summary(ds)
    manifest = json.loads((root / "manifest.json").read_text())
    assert s["photos"] == len(manifest["photos"]) == sum(s["licences"].values())
    assert sum(s["packages"].values()) == s["photos"] and s["scenes"] > 0 and s["cutouts"] > 0
    x, y = ds[len(ds) - 1]
    assert x.shape == (3, 64, 64) and y == -1
