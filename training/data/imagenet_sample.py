"""The 700-photo ImageNet sample (``../shared/data/imagenet-sample``) and its fixed held-out rule.

Why a *fixed* rule: the 200 held-out photos are the only labelled ImageNet images the
evaluation protocol (``docs/data.md``) has beyond foolbox's 20, so every training job and
every benchmark must leave out exactly the same ones, whatever order the file system lists
them in. The rule is positional on the sorted file names and needs no seed:

    sort the photo file names; photo i (0-based) is held out iff ``i % 7 in (0, 3)``

which holds out 2 of every 7 photos: 200 of 700, the other 500 may be trained on.

Labels: the class index of ``<synset>_<name>.JPEG`` is the 0-based line of ``<synset>`` in
``synsets.txt`` (the 1000 ImageNet-1k synsets, sorted: the teacher's output order).

The photos are under ImageNet's research-use terms: they are read from their folder and
never copied into the repository (nor crops of them or arrays made from them). The folder
is absent on a user's fresh clone, so callers get ``ImageNetSampleMissing`` (a
``FileNotFoundError`` that says how to point at the folder) and tests skip on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from training.data.folder import LabelledImages

ENV_VAR = "SPLITFIT_IMAGENET_SAMPLE"
# <repo root>/../shared/data/imagenet-sample
DEFAULT_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imagenet-sample"
SYNSETS_FILE = "synsets.txt"
PHOTO_SUFFIX = ".JPEG"
HELDOUT_PERIOD = 7
HELDOUT_RESIDUES = (0, 3)

Sample = tuple[Path, int]


class ImageNetSampleMissing(FileNotFoundError):
    """The sample folder (or its synsets.txt) is not there: a fresh clone, or a wrong path."""


def imagenet_sample_root(root: str | os.PathLike | None = None) -> Path:
    """The folder to read: ``root`` if given, else ``$SPLITFIT_IMAGENET_SAMPLE``, else the default."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_ROOT


def is_heldout(position: int) -> bool:
    """The held-out rule on a photo's 0-based position among the sorted file names."""
    return position % HELDOUT_PERIOD in HELDOUT_RESIDUES


def read_synsets(root: str | os.PathLike | None = None) -> list[str]:
    """The synsets of ``synsets.txt`` in file order (line i = class index i)."""
    path = imagenet_sample_root(root) / SYNSETS_FILE
    if not path.is_file():
        raise ImageNetSampleMissing(
            f"{path} not found: the ImageNet sample folder is missing; point "
            f"${ENV_VAR} (or the --imagenet-root flag) at the folder holding "
            f"{SYNSETS_FILE} and the <synset>_<name>{PHOTO_SUFFIX} photos"
        )
    synsets = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(set(synsets)) != len(synsets):
        raise ValueError(f"{path}: a synset appears twice; the class index would be ambiguous")
    return synsets


def imagenet_sample_photos(root: str | os.PathLike | None = None) -> list[Sample]:
    """Every (path, class index) of the folder, sorted by file name (the order the rule uses)."""
    folder = imagenet_sample_root(root)
    index = {s: i for i, s in enumerate(read_synsets(folder))}
    names = sorted(n for n in os.listdir(folder) if n.endswith(PHOTO_SUFFIX))
    if not names:
        raise ImageNetSampleMissing(f"{folder}: no *{PHOTO_SUFFIX} photos in the folder")
    samples: list[Sample] = []
    for name in names:
        synset = name.split("_", 1)[0]
        if synset not in index:
            raise ValueError(
                f"{folder / name}: synset {synset!r} is not in {SYNSETS_FILE}; "
                f"photos must be named <synset>_<name>{PHOTO_SUFFIX}"
            )
        samples.append((folder / name, index[synset]))
    return samples


def imagenet_sample_split(
    root: str | os.PathLike | None = None,
) -> tuple[list[Sample], list[Sample]]:
    """``(train, heldout)`` lists of (path, class index): 500 / 200 on the 700-photo sample.

    Held out are the photos at sorted positions i with ``i % 7 in (0, 3)``; never train on them.
    """
    samples = imagenet_sample_photos(root)
    train = [s for i, s in enumerate(samples) if not is_heldout(i)]
    heldout = [s for i, s in enumerate(samples) if is_heldout(i)]
    return train, heldout


class ImageNetSample(LabelledImages):
    """(transform(photo), class index) over a list of samples from ``imagenet_sample_split``."""

    def __init__(
        self, samples: list[Sample], transform: Callable[[Image.Image], torch.Tensor]
    ) -> None:
        super().__init__(samples, transform, what="ImageNet sample photo")
