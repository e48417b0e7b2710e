"""The Debian photo corpus (``make photos``) as unlabelled, augmented distillation input.

Why this augmentation: ~1,080 photos (about 800 scenes, 280 cut-outs) are still few for
distillation, so every photo yields ``crops_per_photo`` different inputs:

* cut-outs (an object on a transparent or white background: animals, food, toys) are
  pasted onto a scene photo, so the teacher sees objects in context instead of on a flat
  background the camera never shows; scenes get a pasted cut-out with probability
  ``paste_prob``;
* then the caller's crop transform (``transform_factory(seed)``, e.g. BottleFit's
  ``CropJitter``: random resized crop, flip, colour jitter, normalisation);
* then, with probability ``mix_prob``, mixup or CutMix with another photo's crop
  (``training.data.transforms.mix_pair``, the same blend ``MixedPhotoCrops`` uses).

Every item is a pure function of (seed, index): the same seed gives the same tensors in
any order or worker, another seed gives another set. Labels are -1 (unlabelled): the
teacher's outputs are the targets.
"""

from __future__ import annotations

import json
import os
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from training.data.transforms import mix_pair

ENV_VAR = "SPLITFIT_PHOTOS"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "vendor" / "photos"
# decoded photos are shrunk so their shorter side is at most this (224 crops need no more)
MAX_SHORT_SIDE = 512
WHITE = 240  # a white-background cut-out's background: every channel above this


class CorpusMissing(FileNotFoundError):
    """``vendor/photos/manifest.json`` is absent: the corpus was never fetched."""


@dataclass(frozen=True)
class CorpusPhoto:
    path: Path
    package: str
    licence: str
    kind: str  # scene | cutout


def corpus_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$SPLITFIT_PHOTOS``, else ``<repo>/vendor/photos``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_ROOT


def corpus_photos(root: str | os.PathLike | None = None) -> list[CorpusPhoto]:
    """Every photo of the manifest, in manifest order (packages, then paths)."""
    folder = corpus_root(root)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise CorpusMissing(
            f"{manifest} not found: run `make photos` (fetches ~600 MB of Debian packages) "
            f"or point ${ENV_VAR} at a corpus folder"
        )
    rows = json.loads(manifest.read_text())["photos"]
    return [CorpusPhoto(folder / r["file"], r["package"], r["licence"], r["kind"]) for r in rows]


# ---------------------------------------------------------------- cut-outs


def cutout_mask(img: Image.Image) -> Image.Image:
    """The object's mask ("L", 255 = object): the alpha channel, else the non-white pixels."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        return img.convert("RGBA").getchannel("A")
    px = np.asarray(img.convert("RGB"))
    return Image.fromarray(np.where((px > WHITE).all(-1), 0, 255).astype(np.uint8))


def paste_at(
    scene: Image.Image, cutout: Image.Image, mask: Image.Image, xy: tuple[int, int]
) -> Image.Image:
    """``scene`` with ``cutout``'s masked pixels copied in at ``xy`` (top-left); a new image."""
    out = scene.convert("RGB").copy()
    out.paste(cutout.convert("RGB"), xy, mask)
    return out


def paste_cutout(
    scene: Image.Image,
    cutout: Image.Image,
    rng: random.Random,
    size_fraction: tuple[float, float] = (0.35, 0.8),
) -> Image.Image:
    """Paste ``cutout`` onto ``scene`` scaled so its longer side is a random fraction of the
    scene's shorter side, at a random position, randomly mirrored."""
    mask = cutout_mask(cutout)
    bbox = mask.getbbox()  # trim empty borders so the object, not its margin, gets the size
    if bbox is None:
        return scene.convert("RGB").copy()
    obj, mask = cutout.crop(bbox), mask.crop(bbox)
    sw, sh = scene.size
    target = rng.uniform(*size_fraction) * min(sw, sh)
    scale = target / max(obj.size)
    size = (max(1, round(obj.size[0] * scale)), max(1, round(obj.size[1] * scale)))
    obj = obj.convert("RGB").resize(size, Image.BICUBIC)
    mask = mask.resize(size, Image.BILINEAR)
    if rng.random() < 0.5:
        obj, mask = obj.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
    x = rng.randint(min(0, sw - size[0]), max(0, sw - size[0]))
    y = rng.randint(min(0, sh - size[1]), max(0, sh - size[1]))
    return paste_at(scene, obj, mask, (x, y))


# ---------------------------------------------------------------- the dataset


class _Decoded:
    """A small LRU of decoded, shrunk photos (items of one photo come in a row)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.items: OrderedDict[Path, Image.Image] = OrderedDict()

    def __call__(self, path: Path) -> Image.Image:
        if path in self.items:
            self.items.move_to_end(path)
            return self.items[path]
        with Image.open(path) as img:
            img.draft("RGB", (MAX_SHORT_SIDE, MAX_SHORT_SIDE))  # JPEG: decode at a lower scale
            img.load()
            mode = (
                "RGBA" if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info else "RGB"
            )
            img = img.convert(mode)
        short = min(img.size)
        if short > MAX_SHORT_SIDE:
            s = MAX_SHORT_SIDE / short
            img = img.resize((round(img.size[0] * s), round(img.size[1] * s)), Image.BICUBIC)
        self.items[path] = img
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return img


class CorpusCrops(Dataset):
    """``crops_per_photo`` augmented inputs per corpus photo; items are (tensor, -1).

    ``transform_factory(seed)`` returns the crop transform for one item (PIL -> normalised
    tensor), as for ``training.data.photos.PhotoCrops``. ``kinds`` picks scenes, cut-outs
    or both as the *base* photo of items (cut-outs always land on a scene).
    """

    def __init__(
        self,
        transform_factory: Callable[[int], Callable[[Image.Image], torch.Tensor]],
        crops_per_photo: int = 4,
        seed: int = 0,
        *,
        root: str | os.PathLike | None = None,
        photos: list[CorpusPhoto] | None = None,
        kinds: tuple[str, ...] = ("scene", "cutout"),
        paste_prob: float = 0.3,
        mix_prob: float = 0.2,
    ) -> None:
        if crops_per_photo < 1:
            raise ValueError(f"crops_per_photo must be >= 1, got {crops_per_photo}")
        for name, p in (("paste_prob", paste_prob), ("mix_prob", mix_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        everything = corpus_photos(root) if photos is None else list(photos)
        self.scenes = [p for p in everything if p.kind == "scene"]
        self.cutouts = [p for p in everything if p.kind == "cutout"]
        if not self.scenes:
            raise ValueError("the corpus has no scene photos: cut-outs need scenes to land on")
        self.photos = [p for p in everything if p.kind in kinds]
        if not self.photos:
            raise ValueError(f"no corpus photos of kind(s) {kinds}")
        self.crops = crops_per_photo
        self.seed = seed
        self.transform_factory = transform_factory
        self.paste_prob = paste_prob
        self.mix_prob = mix_prob
        self._decoded = _Decoded()

    def __len__(self) -> int:
        return len(self.photos) * self.crops

    def composed(self, i: int) -> Image.Image:
        """Item ``i``'s image before cropping: the scene, with a cut-out pasted when drawn."""
        rng = random.Random(self.seed * 1_000_003 + i)
        photo = self.photos[i // self.crops]
        if photo.kind == "cutout":
            scene = self._decoded(rng.choice(self.scenes).path)
            return paste_cutout(scene, self._decoded(photo.path), rng)
        img = self._decoded(photo.path)
        if self.cutouts and rng.random() < self.paste_prob:
            return paste_cutout(img, self._decoded(rng.choice(self.cutouts).path), rng)
        return img.convert("RGB")

    def _crop(self, i: int) -> torch.Tensor:
        return self.transform_factory(self.seed * 1_000_003 + i)(self.composed(i))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        x = self._crop(i)
        rng = random.Random(self.seed * 7_919 + i)
        if len(self.photos) > 1 and rng.random() < self.mix_prob:
            k, n = i // self.crops, len(self.photos)
            other = (k + rng.randrange(1, n)) % n  # always another photo
            x = mix_pair(x, self._crop(other * self.crops + rng.randrange(self.crops)), rng)
        return x, -1

    def licences(self) -> dict[str, int]:
        """licence -> number of photos used, for the README of a model trained on them."""
        return self._count(lambda p: p.licence)

    def packages(self) -> dict[str, int]:
        """Debian package -> number of photos used (the README names the sources)."""
        return self._count(lambda p: p.package)

    def _count(self, key: Callable[[CorpusPhoto], str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in {*self.photos, *self.scenes, *self.cutouts}:
            counts[key(p)] = counts.get(key(p), 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
