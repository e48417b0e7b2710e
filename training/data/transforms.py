"""Image transforms in plain torch + PIL (no torchvision): crops, flips, normalisation.

Datasets hand out float tensors already normalised with the model's mean/std on [0, 1]
pixels — the same convention the exported ``head.pt`` expects and that ``convert-head``
folds into the int8 model.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 CHW in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s


def resize_center_crop(img: Image.Image, size: tuple[int, int], resize_ratio: float = 1.14):
    """Evaluation view: shorter side to size*ratio (256 for 224), then a centre crop."""
    h, w = size
    short = round(min(h, w) * resize_ratio)
    iw, ih = img.size
    scale = short / min(iw, ih)
    img = img.resize((max(w, round(iw * scale)), max(h, round(ih * scale))), Image.BICUBIC)
    iw, ih = img.size
    left, top = (iw - w) // 2, (ih - h) // 2
    return img.crop((left, top, left + w, top + h))


def random_resized_crop(
    img: Image.Image,
    size: tuple[int, int],
    rng: random.Random,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """Inception-style crop: random area fraction and aspect ratio, resized to ``size``."""
    iw, ih = img.size
    area = iw * ih
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= iw and 0 < ch <= ih:
            left = rng.randint(0, iw - cw)
            top = rng.randint(0, ih - ch)
            return img.resize(size[::-1], Image.BICUBIC, box=(left, top, left + cw, top + ch))
    return resize_center_crop(img, size, 1.0)


def mix_pair(a: torch.Tensor, b: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """Mixup or CutMix (even odds) of two same-shape images, the mixing weight in [0.25, 0.75].

    Label-free: the teacher is run on the blend itself, so no label arithmetic is needed.
    Mixup: ``lam * a + (1 - lam) * b``. CutMix: a box of ``b`` covering ``1 - lam`` of the
    area pasted into ``a``.
    """
    lam = rng.uniform(0.25, 0.75)
    if rng.random() < 0.5:  # mixup
        return lam * a + (1.0 - lam) * b
    h, w = a.shape[-2:]
    bh, bw = int(h * (1.0 - lam) ** 0.5), int(w * (1.0 - lam) ** 0.5)
    y0, x0 = rng.randrange(h - bh + 1), rng.randrange(w - bw + 1)
    out = a.clone()
    out[..., y0 : y0 + bh, x0 : x0 + bw] = b[..., y0 : y0 + bh, x0 : x0 + bw]
    return out


@dataclass
class BoardView:
    """The board's own frame -> head input step (``hardware.preprocess``), as a normalised tensor.

    Scores on labelled photos must be taken on the view the device really feeds the head
    (shorter-side resize to 224, centre crop, Pillow bilinear), not on the classic 256 -> 224
    evaluation crop: a split that is judged on one view and deployed on another is judged
    on the wrong images (on the 20 foolbox photos the two views differ by up to 4 photos).
    """

    size: tuple[int, int]
    mean: Sequence[float]
    std: Sequence[float]

    def __call__(self, img: Image.Image) -> torch.Tensor:
        from hardware.preprocess import preprocess

        pixels = preprocess(img.convert("RGB"), size=self.size)[0]
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255.0)
        return normalize(x, self.mean, self.std)


@dataclass
class ImageTransform:
    """PIL image -> normalised tensor, random crops + flips when ``train``."""

    size: tuple[int, int]
    mean: Sequence[float]
    std: Sequence[float]
    train: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        img = img.convert("RGB")
        if self.train:
            img = random_resized_crop(img, self.size, self._rng)
            if self._rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            img = resize_center_crop(img, self.size)
        return normalize(pil_to_tensor(img), self.mean, self.std)
