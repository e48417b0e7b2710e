"""Procedural "dead leaves" images: more distillation inputs when only a few photos ship offline.

Why: label-free head distillation needs many *different* natural-looking inputs, and only 18
photos install offline. The dead-leaves model (Lee, Mumford & Huang, IJCV 2001) — opaque
shapes dropped on top of each other with a power-law size distribution — reproduces the
scale invariance and occlusion edges of natural images, and Baradad et al. ("Learning to See
by Looking at Noise", NeurIPS 2021) found such images a useful stand-in for real data when
training vision models. Colours are sampled from the shipped photos' own pixels so the
colour statistics are those of real scenes; a share of the shapes is filled with a patch of
a real photo instead of a flat colour (textured leaves), and some images are blurred so not
every edge is sharp.

Deterministic per (seed, index), like ``PhotoCrops``, and passed through the same crop
transform, so a job's inputs are reproducible.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import Dataset

from training.data.photos import shipped_photos

CANVAS = 288  # drawn larger than 224 so the crop transform still has room to move
R_MIN, R_MAX = 6.0, 200.0  # leaf radius range in pixels
LEAVES = 300  # per image, drawn back to front
TEXTURED = 0.3  # share of leaves filled with a real photo patch
BLURRED = 0.3  # share of images softened with a Gaussian blur


def power_law_radius(rng: random.Random, r_min: float = R_MIN, r_max: float = R_MAX) -> float:
    """Radius with density ∝ r^-3 on [r_min, r_max] (inverse-CDF sampling): scale invariance."""
    u = rng.random()
    a, b = r_min**-2, r_max**-2
    return (a - u * (a - b)) ** -0.5


class DeadLeaves(Dataset):
    """``n`` dead-leaves images through ``transform_factory(seed)``; label -1 (unlabelled)."""

    def __init__(
        self,
        transform_factory: Callable[[int], Callable[[Image.Image], torch.Tensor]],
        n: int,
        seed: int = 0,
        sources: tuple[str, ...] = ("skimage", "sklearn"),
        canvas: int = CANVAS,
    ) -> None:
        if n < 1:
            raise ValueError(f"dead leaves: need at least one image, got n={n}")
        photos = shipped_photos(sources)
        if not photos:
            raise FileNotFoundError(
                "dead leaves samples colours from the shipped photos; none found "
                "(install scikit-image/scikit-learn)"
            )
        self.n, self.seed, self.canvas = n, seed, canvas
        self.transform_factory = transform_factory
        self._photos: list[np.ndarray] = []
        for p in photos:
            with Image.open(p.path) as img:
                self._photos.append(np.asarray(img.convert("RGB").resize((256, 256))))

    def __len__(self) -> int:
        return self.n

    def render(self, i: int) -> Image.Image:
        """Image ``i``: ``LEAVES`` leaves drawn back to front on a background of one colour."""
        rng = random.Random(self.seed * 1_000_003 + i)
        size = self.canvas
        img = Image.new("RGB", (size, size), self._colour(rng))
        draw = ImageDraw.Draw(img)
        for _ in range(LEAVES):
            r = power_law_radius(rng)
            cx, cy = rng.uniform(-r / 2, size + r / 2), rng.uniform(-r / 2, size + r / 2)
            self._shape(rng, draw, img, cx, cy, r)
        if rng.random() < BLURRED:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
        return img

    def _colour(self, rng: random.Random) -> tuple[int, int, int]:
        photo = self._photos[rng.randrange(len(self._photos))]
        y, x = rng.randrange(photo.shape[0]), rng.randrange(photo.shape[1])
        return tuple(int(v) for v in photo[y, x])  # type: ignore[return-value]

    def _shape(self, rng: random.Random, draw: ImageDraw.ImageDraw, img: Image.Image,
               cx: float, cy: float, r: float) -> None:  # fmt: skip
        """Draw one leaf: an ellipse or rotated rectangle, flat colour or a real photo patch."""
        aspect = rng.uniform(0.5, 1.0)
        angle = rng.uniform(0, math.pi)
        rx, ry = r, r * aspect
        if rng.random() < 0.5:  # ellipse as a polygon so it can rotate
            pts = [(cx + rx * math.cos(t) * math.cos(angle) - ry * math.sin(t) * math.sin(angle),
                    cy + rx * math.cos(t) * math.sin(angle) + ry * math.sin(t) * math.cos(angle))
                   for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]  # fmt: skip
        else:
            c, s = math.cos(angle), math.sin(angle)
            pts = [(cx + dx * c - dy * s, cy + dx * s + dy * c)
                   for dx, dy in ((-rx, -ry), (rx, -ry), (rx, ry), (-rx, ry))]  # fmt: skip
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box = (min(xs), min(ys), max(xs), max(ys))
        if rng.random() < TEXTURED and r > 8:
            w, h = max(1, int(box[2] - box[0])), max(1, int(box[3] - box[1]))
            photo = self._photos[rng.randrange(len(self._photos))]
            pw, ph = min(w, photo.shape[1]), min(h, photo.shape[0])
            px, py = rng.randrange(photo.shape[1] - pw + 1), rng.randrange(photo.shape[0] - ph + 1)
            patch = Image.fromarray(photo[py : py + ph, px : px + pw]).resize((w, h))
            mask = Image.new("L", (w, h), 0)
            ImageDraw.Draw(mask).polygon([(x - box[0], y - box[1]) for x, y in pts], fill=255)
            img.paste(patch, (int(box[0]), int(box[1])), mask)
        else:
            draw.polygon(pts, fill=self._colour(rng))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.n:
            raise IndexError(f"dead leaves image {i} out of range (n={self.n})")
        transform = self.transform_factory(self.seed * 1_000_003 + i)
        return transform(self.render(i)), -1
