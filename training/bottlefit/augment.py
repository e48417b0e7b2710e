"""Training-time augmentation of BottleFit's photos: random resized crop, flip, colour jitter.

Why: stage 1 needs no labels, so a few hundred photos become thousands of distinct inputs
by cropping; each crop is seeded so a rerun (and the teacher cache) sees the same pixels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from PIL import Image, ImageEnhance

from training.data.transforms import normalize, pil_to_tensor, random_resized_crop


@dataclass
class CropJitter:
    """Random resized crop + flip + colour jitter (brightness/contrast/saturation) -> tensor."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    seed: int
    jitter: float = 0.3

    def __call__(self, img: Image.Image) -> torch.Tensor:
        rng = random.Random(self.seed)
        img = random_resized_crop(img.convert("RGB"), self.size, rng, scale=(0.15, 1.0))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(1.0 + rng.uniform(-self.jitter, self.jitter))
        return normalize(pil_to_tensor(img), self.mean, self.std)
