"""The Debian photo corpus dataset and its augmentation, on tiny generated images."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from training.data.corpus import (  # noqa: E402
    CorpusCrops,
    CorpusMissing,
    corpus_photos,
    cutout_mask,
    paste_at,
    paste_cutout,
)
from training.data.transforms import ImageTransform, mix_pair  # noqa: E402

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def factory(seed: int) -> ImageTransform:
    return ImageTransform((32, 32), MEAN, STD, train=True, seed=seed)


def noise(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


def alpha_cutout(w: int = 60, h: int = 40, colour=(250, 0, 250)) -> Image.Image:
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (w // 2, h // 2), (*colour, 255)), (w // 4, h // 4))
    return img


def white_cutout() -> Image.Image:
    img = Image.new("RGB", (50, 50), (255, 255, 255))
    img.paste((0, 200, 0), (10, 10, 30, 40))
    return img


def fake_corpus(tmp: Path) -> Path:
    rows = []
    for i in range(2):
        noise(120, 90, i).save(tmp / f"scene{i}.png")
        rows.append({"file": f"scene{i}.png", "package": "p", "licence": "CC0", "kind": "scene"})
    alpha_cutout().save(tmp / "c_alpha.png")
    white_cutout().save(tmp / "c_white.png")
    for name in ("c_alpha.png", "c_white.png"):
        rows.append({"file": name, "package": "q", "licence": "GPL-2", "kind": "cutout"})
    (tmp / "manifest.json").write_text(json.dumps({"count": len(rows), "photos": rows}))
    return tmp


def test_items_have_the_crop_shape_and_no_label(tmp_path: Path) -> None:
    ds = CorpusCrops(factory, crops_per_photo=3, seed=0, root=fake_corpus(tmp_path))
    assert len(ds) == 4 * 3
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == -1
        assert torch.isfinite(x).all()
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert ds.licences() == {"CC0": 2, "GPL-2": 2}


def test_same_seed_same_items_in_any_order_other_seed_differs(tmp_path: Path) -> None:
    root = fake_corpus(tmp_path)
    a = CorpusCrops(factory, 3, seed=5, root=root, paste_prob=0.5, mix_prob=0.5)
    b = CorpusCrops(factory, 3, seed=5, root=root, paste_prob=0.5, mix_prob=0.5)
    c = CorpusCrops(factory, 3, seed=6, root=root, paste_prob=0.5, mix_prob=0.5)
    forward = [a[i][0] for i in range(len(a))]
    backward = [b[i][0] for i in reversed(range(len(b)))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(forward, backward, strict=True))
    assert not all(torch.equal(x, c[i][0]) for i, x in enumerate(forward))


def test_cutout_items_land_on_a_scene(tmp_path: Path) -> None:
    ds = CorpusCrops(factory, 2, seed=0, root=fake_corpus(tmp_path), kinds=("cutout",))
    assert len(ds) == 4
    img = np.asarray(ds.composed(0))  # the alpha cut-out, magenta, on a noise scene
    magenta = (img == (250, 0, 250)).all(-1)
    assert 0 < magenta.mean() < 0.5  # the object is there and the scene around it


def test_paste_at_keeps_the_cutout_pixels_and_the_scene_elsewhere() -> None:
    scene = noise(80, 60, 3)
    obj = noise(30, 20, 4).convert("RGBA")
    mask = Image.new("L", (30, 20), 0)
    mask.paste(255, (5, 5, 25, 15))
    out = np.asarray(paste_at(scene, obj, mask, (40, 30)))
    s, o = np.asarray(scene), np.asarray(obj.convert("RGB"))
    assert np.array_equal(out[35:45, 45:65], o[5:15, 5:25])  # object pixels, unchanged
    keep = np.ones(out.shape[:2], bool)
    keep[35:45, 45:65] = False
    assert np.array_equal(out[keep], s[keep])  # masked-out margin and the rest: the scene
    assert np.array_equal(np.asarray(scene), s)  # the input is not modified


def test_paste_cutout_scales_into_the_scene_and_keeps_its_colour() -> None:
    scene = noise(200, 100, 1)
    for seed in range(5):
        out = np.asarray(paste_cutout(scene, alpha_cutout(), random.Random(seed)))
        magenta = (out == (250, 0, 250)).all(-1)
        ys, xs = np.nonzero(magenta)
        longer = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
        assert 0.3 * 100 <= longer <= 0.85 * 100  # 0.35-0.8 of the shorter side, +- resampling
        assert out.shape == (100, 200, 3)


def test_white_background_mask() -> None:
    mask = np.asarray(cutout_mask(white_cutout()))
    assert mask[20, 20] == 255 and mask[0, 0] == 0
    assert (mask == 255).sum() == 20 * 30


def test_mix_prob_blends_another_photo(tmp_path: Path) -> None:
    root = fake_corpus(tmp_path)
    plain = CorpusCrops(factory, 2, seed=1, root=root, mix_prob=0.0)
    mixed = CorpusCrops(factory, 2, seed=1, root=root, mix_prob=1.0)
    assert all(not torch.equal(plain[i][0], mixed[i][0]) for i in range(len(plain)))
    a, b = torch.zeros(3, 8, 8), torch.ones(3, 8, 8)
    m = mix_pair(a, b, random.Random(0))
    assert 0.2 < float(m.mean()) < 0.8


def test_missing_corpus_says_make_photos(tmp_path: Path) -> None:
    with pytest.raises(CorpusMissing, match="make photos"):
        corpus_photos(tmp_path)
    with pytest.raises(ValueError, match="paste_prob"):
        CorpusCrops(factory, 2, root=fake_corpus(tmp_path), paste_prob=1.5)


REAL = Path(__file__).resolve().parents[1] / "vendor/photos/manifest.json"


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_file(), reason="Debian photo corpus not fetched (run make photos)")
def test_real_corpus_crops() -> None:
    def full(seed: int) -> ImageTransform:
        return ImageTransform((224, 224), MEAN, STD, train=True, seed=seed)

    ds = CorpusCrops(full, 2, seed=0)
    assert len(ds) >= 1800
    for i in range(0, len(ds), len(ds) // 12):
        x, _ = ds[i]
        assert x.shape == (3, 224, 224) and torch.isfinite(x).all()
