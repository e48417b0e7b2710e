"""BottleFit's inputs from photo *lists*: the ImageNet sample's train/held-out halves,
and the Debian photo corpus as unlabelled, augmented distillation input.

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

from training.data.corpus import CorpusCrops
from training.data.imagenet_sample import imagenet_sample_split
from training.data.photos import PHOTO_SOURCES, MixedPhotoCrops, Photo, PhotoCrops

IMAGENET_SAMPLE_SOURCE = "imagenet-sample"
IMAGENET_SAMPLE_LICENCE = "ImageNet terms: research use"
# the Debian photo corpus (`make photos`, vendor/photos): unlabelled, KD-only rows
DEBIAN_CORPUS_SOURCE = "debian-corpus"
LIST_SOURCES = (IMAGENET_SAMPLE_SOURCE, DEBIAN_CORPUS_SOURCE)


def shipped_sources(sources: tuple[str, ...]) -> tuple[str, ...]:
    """The shipped photo sets among ``sources`` (those ``shipped_photos`` reads by name).

    Unknown names fail here, listing every known one, so a typo in ``--sources`` stops
    the run before the teacher is loaded.
    """
    unknown = sorted(set(sources) - set(PHOTO_SOURCES) - set(LIST_SOURCES))
    if unknown:
        known = ", ".join((*LIST_SOURCES, *PHOTO_SOURCES))
        raise ValueError(f"unknown photo source(s) {unknown}; known: {known}")
    return tuple(x for x in sources if x not in LIST_SOURCES)


def corpus_crops(
    transform_factory: Callable[[int], Callable[[Image.Image], torch.Tensor]],
    crops_per_photo: int,
    seed: int,
    root: str | os.PathLike | None = None,
) -> CorpusCrops:
    """``crops_per_photo`` augmented inputs per Debian-corpus photo (cut-outs pasted onto
    scenes, then the crop transform, then mixup/CutMix), labelled -1: the teacher's outputs
    are the only targets. Raises ``CorpusMissing`` ("run `make photos`") without a corpus."""
    return CorpusCrops(transform_factory, crops_per_photo, seed, root=root)


def corpus_summary(ds: CorpusCrops) -> dict:
    """What a model trained on ``ds`` must list next to it: counts per licence and package."""
    return {
        "photos": len({*ds.photos, *ds.scenes, *ds.cutouts}),
        "scenes": len(ds.scenes),
        "cutouts": len(ds.cutouts),
        "crops": len(ds),
        "licences": ds.licences(),
        "packages": ds.packages(),
    }


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
