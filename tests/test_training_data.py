"""Datasets: IDX parsing, missing-data errors, folder layout, shipped photos, synthetic set."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from training.data import build_dataset  # noqa: E402
from training.data.fashion_mnist import DatasetMissing, FashionMNIST, load_arrays  # noqa: E402
from training.data.photos import MixedPhotoCrops, PhotoCrops, shipped_photos  # noqa: E402
from training.data.synthetic import SyntheticShapes  # noqa: E402


def _write_idx(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    names = {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }[split]
    n, h, w = images.shape
    with gzip.open(root / names[0], "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, h, w) + images.tobytes())
    with gzip.open(root / names[1], "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + labels.tobytes())


def test_idx_files_are_parsed_and_served_as_three_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    _write_idx(tmp_path, "train", imgs, labels)
    x, y = load_arrays("train", tmp_path)
    assert np.array_equal(x, imgs) and np.array_equal(y, labels)
    ds = FashionMNIST("train", tmp_path)
    img, lab = ds[2]
    assert img.shape == (3, 28, 28) and lab == 4
    expected = (imgs[2] / 255.0 - FashionMNIST.mean[0]) / FashionMNIST.std[0]
    assert torch.allclose(img[1], torch.from_numpy(expected).float(), atol=1e-5)
    assert torch.equal(img[0], img[2])


def test_missing_or_corrupt_fashion_mnist_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match="make data"):
        load_arrays("train", tmp_path)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x999, 1, 28, 28) + bytes(784))
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, 1) + bytes(1))
    with pytest.raises(ValueError, match="bad IDX magic"):
        load_arrays("train", tmp_path)


def test_real_fashion_mnist_if_installed() -> None:
    try:
        x, y = load_arrays("test")
    except DatasetMissing:
        pytest.skip("Fashion-MNIST not installed (make data)")
    assert x.shape == (10000, 28, 28) and sorted(set(y.tolist())) == list(range(10))


def test_class_folder_dataset(tmp_path: Path) -> None:
    for cls, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (40, 30), colour).save(tmp_path / cls / f"{i}.jpg")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    b = build_dataset(str(tmp_path), input_size=24)
    assert b.labels == ("cat", "dog")
    assert len(b.train) + len(b.val) == 10 and len(b.val) == 2
    x, y = b.val[0]
    assert x.shape == (3, 24, 24)
    # a red image normalised with ImageNet stats: red channel high, blue low
    assert (x[0].mean() > x[2].mean()) == (y == 0)
    with pytest.raises(ValueError, match="neither a built-in dataset"):
        build_dataset(str(tmp_path / "nope"))


def test_shipped_photos_are_found_with_licences_and_labels() -> None:
    photos = shipped_photos()
    sources = {p.source for p in photos}
    assert {"skimage", "sklearn", "foolbox"} <= sources
    labelled = [p for p in photos if p.label is not None]
    assert len(labelled) == 20 and all(0 <= p.label < 1000 for p in labelled)
    assert all(p.licence and p.path.is_file() for p in photos)


def test_extra_photo_sources_are_opt_in_and_named() -> None:
    default = shipped_photos()
    extra = shipped_photos(("skimage-gray", "matplotlib"))
    assert {p.source for p in extra} == {"skimage-gray", "matplotlib"}
    assert not {p.path for p in extra} & {p.path for p in default}
    assert all(p.licence and p.label is None for p in extra)
    with pytest.raises(ValueError, match="unknown photo source"):
        shipped_photos(("skimage", "imagenet"))


def _tiny_crop(seed: int):
    from training.bottlefit import CropJitter

    return CropJitter((32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), seed=seed)


def test_mixed_crops_blend_two_different_photos_deterministically() -> None:
    plain = PhotoCrops(_tiny_crop, 3, seed=5, sources=("skimage", "sklearn"))
    mixed = MixedPhotoCrops(_tiny_crop, 3, seed=5, sources=("skimage", "sklearn"))
    assert len(mixed) == len(plain) and len(mixed.photos) >= 2
    a, label = mixed[4]
    assert label == -1 and a.shape == plain[4][0].shape
    assert torch.equal(a, mixed[4][0])  # deterministic per (seed, index)
    # the blend is none of the plain crops of this photo: another photo went into it
    assert all(not torch.allclose(a, plain[j][0]) for j in range(3, 6))
    # and it stays within the parents' value range (convex blend or pasted box)
    lo = min(float(plain[j][0].min()) for j in range(len(plain)))
    hi = max(float(plain[j][0].max()) for j in range(len(plain)))
    assert lo - 1e-6 <= float(a.min()) and float(a.max()) <= hi + 1e-6


def test_synthetic_is_seeded_and_class_dependent() -> None:
    a, b = SyntheticShapes(32, seed=3), SyntheticShapes(32, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(SyntheticShapes(32, seed=4).x, a.x)
