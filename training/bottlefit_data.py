"""BottleFit's inputs from photo *lists*: the ImageNet sample's train/held-out halves.

``training.data.photos`` builds its crop datasets from the shipped photo sets by name;
BottleFit at early cuts needs hundreds of real photos instead (the ImageNet sample,
``../shared/data/imagenet-sample``), split by the fixed evaluation rule so the 200
held-out photos are never trained on. Nothing here copies the photos anywhere: they are
read from their folder, decoded in memory, and only crops' *features* are cached, in a
git-ignored run folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from training.data.photos import MixedPhotoCrops, Photo, PhotoCrops

IMAGENET_SAMPLE_ENV = "SPLITFIT_IMAGENET_SAMPLE"
IMAGENET_SAMPLE_SOURCE = "imagenet-sample"
IMAGENET_SAMPLE_LICENCE = "ImageNet terms: research use"


def default_imagenet_root() -> Path:
    """``$SPLITFIT_IMAGENET_SAMPLE``, else ``../shared/data/imagenet-sample`` next to the repo."""
    env = os.environ.get(IMAGENET_SAMPLE_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def is_heldout(position: int) -> bool:
    """The fixed rule (docs/data.md): position i of the sorted file names is held out iff
    i % 7 is 0 or 3 — 200 of 700 photos, spread evenly over the synset order."""
    return position % 7 in (0, 3)


def imagenet_sample_split(root: str | Path | None = None) -> tuple[list[Photo], list[Photo]]:
    """(train, held-out) photos of the ImageNet sample, labelled by their synset's line."""
    root = Path(root) if root else default_imagenet_root()
    synsets_file = root / "synsets.txt"
    if not synsets_file.is_file():
        raise FileNotFoundError(
            f"ImageNet sample not found: {synsets_file} is missing (pass --imagenet-root or "
            f"set {IMAGENET_SAMPLE_ENV} to the folder of <synset>_<name>.JPEG + synsets.txt)"
        )
    index = {s: i for i, s in enumerate(synsets_file.read_text().split())}
    names = sorted(p.name for p in root.glob("*.JPEG"))
    if not names:
        raise FileNotFoundError(f"no *.JPEG photos in {root}")
    train: list[Photo] = []
    held: list[Photo] = []
    for i, name in enumerate(names):
        synset = name.split("_", 1)[0]
        if synset not in index:
            raise ValueError(f"{name}: synset {synset!r} is not in {synsets_file}")
        photo = Photo(root / name, IMAGENET_SAMPLE_SOURCE, IMAGENET_SAMPLE_LICENCE, index[synset])
        (held if is_heldout(i) else train).append(photo)
    return train, held


class ListedPhotoCrops(PhotoCrops):
    """``PhotoCrops`` over an explicit photo list (same deterministic per-index crops)."""

    def __init__(
        self,
        photos: list[Photo],
        transform_factory: Callable[[int], Callable[[Image.Image], torch.Tensor]],
        crops_per_photo: int,
        seed: int = 0,
    ) -> None:
        if not photos:
            raise ValueError("ListedPhotoCrops needs at least one photo")
        self.photos = list(photos)
        self.crops = crops_per_photo
        self.seed = seed
        self.transform_factory = transform_factory
        self._cache: dict[int, Image.Image] = {}


def listed_mixed_crops(
    photos: list[Photo],
    transform_factory: Callable[[int], Callable[[Image.Image], torch.Tensor]],
    crops_per_photo: int,
    seed: int,
) -> MixedPhotoCrops:
    """``MixedPhotoCrops`` (mixup/CutMix of two photos' crops) over an explicit photo list."""
    if len(photos) < 2:
        raise ValueError("mixing needs at least two photos")
    mixed = MixedPhotoCrops.__new__(MixedPhotoCrops)
    mixed.base = ListedPhotoCrops(photos, transform_factory, crops_per_photo, seed)
    mixed.photos = mixed.base.photos
    mixed.seed = seed
    return mixed


class LabelledPhotos(Dataset):
    """One fixed view (e.g. the board's) of each photo with its label (-1 if unlabelled)."""

    def __init__(
        self, photos: list[Photo], transform: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        self.photos = list(photos)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        p = self.photos[i]
        with Image.open(p.path) as img:
            label = -1 if p.label is None else int(p.label)
            return self.transform(img.convert("RGB")), label
