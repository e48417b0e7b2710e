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

from training.data.imagenet_sample import imagenet_sample_split
from training.data.photos import MixedPhotoCrops, Photo, PhotoCrops

IMAGENET_SAMPLE_SOURCE = "imagenet-sample"
IMAGENET_SAMPLE_LICENCE = "ImageNet terms: research use"


def imagenet_sample_photos_split(
    root: str | os.PathLike | None = None,
) -> tuple[list[Photo], list[Photo]]:
    """(train, held-out) of ``training.data.imagenet_sample`` — the one owner of the fixed
    rule and the reader — as ``Photo`` records, which the crop datasets take."""

    def photos(samples: list[tuple[Path, int]]) -> list[Photo]:
        return [Photo(p, IMAGENET_SAMPLE_SOURCE, IMAGENET_SAMPLE_LICENCE, y) for p, y in samples]

    train, held = imagenet_sample_split(root)
    return photos(train), photos(held)


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
