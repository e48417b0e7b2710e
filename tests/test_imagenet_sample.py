"""The ImageNet-sample source and its fixed held-out rule (500 train / 200 held out)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from training.data import imagenet_sample as ims  # noqa: E402
from training.data.imagenet_sample import (  # noqa: E402
    ImageNetSample,
    ImageNetSampleMissing,
    imagenet_sample_photos,
    imagenet_sample_root,
    imagenet_sample_split,
    is_heldout,
)

REAL = imagenet_sample_root()
needs_real = pytest.mark.skipif(
    not (REAL / "synsets.txt").is_file(),
    reason=f"ImageNet sample folder {REAL} absent (set $SPLITFIT_IMAGENET_SAMPLE to run)",
)


def fake_sample(tmp: Path, n_photos: int = 700, n_classes: int = 1000) -> Path:
    """A folder laid out like the sample: synsets.txt + empty <synset>_<name>.JPEG files."""
    synsets = [f"n{10_000_000 + 7 * i:08d}" for i in range(n_classes)]
    (tmp / "synsets.txt").write_text("\n".join(synsets) + "\n")
    (tmp / "README.md").write_text("not a photo\n")
    chosen = random.Random(1).sample(range(n_classes), n_photos)
    for c in chosen:
        (tmp / f"{synsets[c]}_thing{c}.JPEG").write_bytes(b"")
    return tmp


def test_rule_holds_out_two_of_every_seven() -> None:
    held = [i for i in range(700) if is_heldout(i)]
    assert len(held) == 200
    assert held[:4] == [0, 3, 7, 10]


def test_split_sizes_no_overlap_and_labels(tmp_path: Path) -> None:
    root = fake_sample(tmp_path)
    train, held = imagenet_sample_split(root)
    assert (len(train), len(held)) == (500, 200)
    assert not {p for p, _ in train} & {p for p, _ in held}
    synsets = (root / "synsets.txt").read_text().split()
    for path, label in train + held:
        assert path.name.startswith(synsets[label] + "_")
    names = sorted(p.name for p, _ in train + held)
    assert [p.name for p, _ in held] == [n for i, n in enumerate(names) if i % 7 in (0, 3)]


def test_split_is_deterministic_and_ignores_listing_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_sample(tmp_path)
    first = imagenet_sample_split(root)
    real_listdir = os.listdir
    for seed in range(3):

        def shuffled(path, _seed=seed):
            names = real_listdir(path)
            random.Random(_seed).shuffle(names)
            return names

        monkeypatch.setattr(ims.os, "listdir", shuffled)
        assert imagenet_sample_split(root) == first


def test_env_var_and_argument_choose_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_sample(tmp_path, n_photos=14, n_classes=20)
    monkeypatch.setenv("SPLITFIT_IMAGENET_SAMPLE", str(root))
    assert imagenet_sample_root() == root
    train, held = imagenet_sample_split()
    assert (len(train), len(held)) == (10, 4)
    assert imagenet_sample_root("/elsewhere") == Path("/elsewhere")


def test_missing_folder_error_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ImageNetSampleMissing, match="SPLITFIT_IMAGENET_SAMPLE"):
        imagenet_sample_split(tmp_path / "absent")


def test_unknown_synset_is_named(tmp_path: Path) -> None:
    root = fake_sample(tmp_path, n_photos=3, n_classes=5)
    (root / "n99999999_stray.JPEG").write_bytes(b"")
    with pytest.raises(ValueError, match="n99999999"):
        imagenet_sample_photos(root)


def test_dataset_reads_photo_and_label(tmp_path: Path) -> None:
    root = fake_sample(tmp_path, n_photos=2, n_classes=3)
    train, held = imagenet_sample_split(root)
    path, label = held[0]
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path, format="JPEG")
    ds = ImageNetSample(held, lambda img: torch.tensor(img.size))
    x, y = ds[0]
    assert x.tolist() == [40, 30] and y == label
    bad = ImageNetSample(train, lambda img: img)
    with pytest.raises(ValueError, match="cannot read ImageNet sample photo"):
        bad[0]  # an empty file is not a JPEG


@needs_real
def test_real_sample_split() -> None:
    train, held = imagenet_sample_split(REAL)
    assert (len(train), len(held)) == (500, 200)
    assert not {p for p, _ in train} & {p for p, _ in held}
    assert held[0][0].name == "n01440764_tench.JPEG" and held[0][1] == 0
    labels = [y for _, y in train + held]
    assert len(set(labels)) == 700 and all(0 <= y < 1000 for y in labels)
