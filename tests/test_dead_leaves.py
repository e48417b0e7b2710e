"""Dead-leaves distillation images: deterministic, photo-coloured, scale-invariant sizes."""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.bottlefit import BottleFitJob  # noqa: E402
from training.data.dead_leaves import R_MAX, R_MIN, DeadLeaves, power_law_radius  # noqa: E402
from training.data.photos import shipped_photos  # noqa: E402

pytestmark = pytest.mark.skipif(
    not shipped_photos(("skimage", "sklearn")), reason="needs the shipped photos"
)


def _identity(_seed: int):
    return lambda img: torch.from_numpy(np.asarray(img).copy())


def test_images_are_deterministic_per_seed_and_index() -> None:
    a = DeadLeaves(_identity, 3, seed=1)
    b = DeadLeaves(_identity, 3, seed=1)
    c = DeadLeaves(_identity, 3, seed=2)
    assert torch.equal(a[0][0], b[0][0])
    assert not torch.equal(a[0][0], a[1][0])
    assert not torch.equal(a[0][0], c[0][0])
    assert a[2][1] == -1  # unlabelled


def test_images_are_varied_scenes_not_flat_fields() -> None:
    ds = DeadLeaves(_identity, 4, seed=0)
    for i in range(len(ds)):
        x = ds[i][0].float()
        assert x.shape == (288, 288, 3)
        assert float(x.std()) > 20  # many leaves of different colours
        colours = {tuple(v) for v in x.reshape(-1, 3)[::97].int().tolist()}
        assert len(colours) > 30


def test_radius_density_falls_as_r_cubed() -> None:
    """P(r > x) = (x^-2 - R_MAX^-2) / (R_MIN^-2 - R_MAX^-2): check it at two points."""
    rng = random.Random(0)
    r = np.array([power_law_radius(rng) for _ in range(20000)])
    assert r.min() >= R_MIN and r.max() <= R_MAX
    for x in (12.0, 48.0):
        expected = (x**-2 - R_MAX**-2) / (R_MIN**-2 - R_MAX**-2)
        assert abs(float((r > x).mean()) - expected) < 0.01


def test_out_of_range_index_and_bad_counts_are_refused() -> None:
    ds = DeadLeaves(_identity, 2)
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(ValueError, match="at least one"):
        DeadLeaves(_identity, 0)
    with pytest.raises(ValueError, match="dead_leaves must be >= 0"):
        BottleFitJob(dead_leaves=-1)


@pytest.mark.slow  # the real EfficientNet-Lite0 teacher at 224² on ~40 inputs (~15 s)
def test_tiny_imagenet_bottlefit_run_mixes_photos_blends_and_dead_leaves() -> None:
    from training.bottlefit import BottleFitConfig, run_bottlefit
    from training.compressor import CodecConfig

    job = BottleFitJob(
        after="stage6",
        channels=8,
        stride=1,
        codec=CodecConfig("zstd", 1, {}),
        train_crops=1,
        mixed_crops=1,
        dead_leaves=3,
        sources=("skimage", "sklearn"),
        heldout_crops=1,
        threads=2,
        progress=False,
        fit=BottleFitConfig(stage1_epochs=2, stage2_epochs=1, stage2_train="bottleneck"),
    )
    r = run_bottlefit(job, naive_baseline=False)
    data = r.metrics["data"]
    n_photos = data["train_photos"]
    assert (data["train_crops"], data["mixed_crops"], data["dead_leaves"]) == (
        n_photos,
        n_photos,
        3,
    )
    assert len(r.feats) == 2 * n_photos + 3  # the teacher saw every input once
    assert r.metrics["bytes"]["wire_mean"] > 0
    assert 0.0 <= r.metrics["bottlefit"]["heldout_top1_agreement"] <= 1.0
