"""Calibration images: read a folder (or synthesise a seeded set), shaped like the board's.

The board resizes the shorter side and centre-crops to the head's input, then feeds raw
uint8 RGB pixels (the normalisation is folded into the model). Calibration must see the
same distribution, so images here go through the very same function
(``hardware.preprocess.preprocess``).

The input tensor's quantisation comes from the range calibration observes. For raw pixels
to map 1:1 onto the uint8 input (scale 1/255, zero point 0) the set must contain an exact 0
and an exact 255; ``ensure_full_range`` guarantees that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from converter.errors import CalibrationError
from hardware.preprocess import preprocess

Warn = Callable[[str], None]


@dataclass
class ImageSet:
    pixels: np.ndarray  # (N, H, W, 3) uint8
    names: list[str]
    skipped: list[str]


def fit_to_input(img: Image.Image, hw: tuple[int, int]) -> np.ndarray:
    """Shorter-side resize + centre crop with the board's own code (bit-identical inputs)."""
    return preprocess(img.convert("RGB"), hw)[0]


def load_image_folder(
    folder: Path, hw: tuple[int, int], warn: Warn, progress: bool = True
) -> ImageSet:
    """All decodable images below ``folder`` (sorted, recursive); the rest skipped with a warning."""
    folder = Path(folder)
    if not folder.exists():
        raise CalibrationError(f"calibration folder not found: {folder}")
    if not folder.is_dir():
        raise CalibrationError(f"calibration path is not a folder: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CalibrationError(f"calibration folder {folder} is empty")
    arrays: list[np.ndarray] = []
    names: list[str] = []
    skipped: list[str] = []
    for p in tqdm(files, desc="reading calibration images", unit="img", disable=not progress):
        try:
            with Image.open(p) as img:
                img.load()
                arrays.append(fit_to_input(img, hw))
            names.append(str(p.relative_to(folder)))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warn(f"skipping {p}: cannot decode image ({reason})")
            skipped.append(str(p.relative_to(folder)))
    if not arrays:
        raise CalibrationError(
            f"none of the {len(files)} files in {folder} could be decoded as an image"
        )
    return ImageSet(pixels=np.stack(arrays), names=names, skipped=skipped)


def synthetic_images(n: int, hw: tuple[int, int], seed: int = 0) -> ImageSet:
    """Seeded natural-looking images: smooth colour fields, shapes, edges and mild noise.

    Pure noise calibrates badly (activations of real scenes are smoother and sparser), so
    the synthetic set mimics the low-frequency structure of photos.
    """
    if n < 1:
        raise CalibrationError(f"--calib-synthetic needs at least 1 image, got {n}")
    h, w = hw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        coarse = rng.random((4, 4, 3)).astype(np.float32)
        field = np.asarray(
            Image.fromarray((coarse * 255).astype(np.uint8)).resize(
                (w, h), Image.Resampling.BICUBIC
            ),
            dtype=np.float32,
        )
        for _ in range(int(rng.integers(2, 6))):
            cy, cx = rng.random() * h, rng.random() * w
            r = (0.08 + 0.25 * rng.random()) * min(h, w)
            colour = rng.random(3) * 255
            if rng.random() < 0.5:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            else:
                mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * (0.5 + rng.random()))
            field[mask] = 0.35 * field[mask] + 0.65 * colour
        field += rng.normal(0, 6, size=field.shape)
        out[i] = np.clip(field, 0, 255).astype(np.uint8)
    return ImageSet(pixels=out, names=[f"synthetic-{i}" for i in range(n)], skipped=[])


def ensure_full_range(pixels: np.ndarray) -> np.ndarray:
    """Return a copy whose first image holds an exact 0 and 255 in every channel.

    Two corner pixels of one calibration image are a negligible change to calibration,
    and they pin the observed input range to [0, 255] so the converter derives
    scale 1/255, zero point 0 -- raw camera pixels then map onto the input 1:1.
    """
    out = pixels.copy()
    out[0, 0, 0, :] = 0
    out[0, 0, 1, :] = 255
    return out


def split_holdout(n: int, warn: Warn) -> tuple[list[int], list[int]]:
    """Indices (calibration, verification): every 5th image is held out, at least one."""
    if n == 1:
        warn("only 1 calibration image: verifying on the same image it was calibrated on")
        return [0], [0]
    hold = [i for i in range(n) if i % 5 == 4] or [n - 1]
    calib = [i for i in range(n) if i not in set(hold)]
    return calib, hold
