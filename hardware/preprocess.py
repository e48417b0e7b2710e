"""Camera frame → the head's input tensor: shorter-side resize, centre crop, uint8 NHWC.

No normalisation happens here: the converter folds mean/std into the int8 head, so the
board ships raw pixels and never does float math per pixel. Calibration images for the
converter should go through this same function so the head sees identically prepared
inputs on and off the board.

Speed: the crop is expressed as a *box* on the source, so Pillow crops and resizes in one
pass, and ``reducing_gap=1.0`` lets it first shrink by an integer factor with a cheap box
filter (``Image.reduce``) before the antialiased bilinear step. For 640×480 → 224×224 that
halves the work of a plain resize-then-crop (see ``benchmarks/capture.py``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BILINEAR
REDUCING_GAP = 1.0


def crop_box(height: int, width: int, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centred source region (left, top, right, bottom) whose shorter-side resize fills ``size``.

    Float coordinates: Pillow resamples sub-pixel boxes exactly, so the crop is centred
    even when the scaled margin is an odd number of pixels.
    """
    out_h, out_w = size
    scale = max(out_h / height, out_w / width)
    crop_h, crop_w = out_h / scale, out_w / scale
    top, left = (height - crop_h) / 2.0, (width - crop_w) / 2.0
    # Clamp: float round-off can put an edge a hair outside the image, which Pillow rejects.
    return (
        max(left, 0.0),
        max(top, 0.0),
        min(left + crop_w, float(width)),
        min(top + crop_h, float(height)),
    )


def _validate_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        out_h, out_w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"preprocess: size must be (height, width), got {size!r}") from None
    if out_h <= 0 or out_w <= 0 or (out_h, out_w) != tuple(size):
        raise ValueError(f"preprocess: size must be two positive integers, got {size!r}")
    return out_h, out_w


def _to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"preprocess: expected a numpy array or PIL image, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"preprocess: expected uint8 pixels, got dtype {image.dtype}")
    if image.ndim == 2:
        return Image.fromarray(image, "L").convert("RGB")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"preprocess: expected an H×W×3 RGB image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"preprocess: empty image of shape {image.shape}")
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return Image.fromarray(np.ascontiguousarray(image), "RGB")


def preprocess(image: np.ndarray | Image.Image, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """Resize the shorter side to fit, centre-crop to ``size`` = (H, W); uint8 (1, H, W, 3).

    Accepts uint8 RGB (H×W×3), RGBA (alpha dropped) or greyscale (H×W), or a PIL image.
    """
    out_h, out_w = _validate_size(size)
    pil = _to_pil(image)
    box = crop_box(pil.height, pil.width, (out_h, out_w))
    resized = pil.resize((out_w, out_h), RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    # np.array (not asarray): Pillow hands out a read-only buffer; consumers may write.
    return np.array(resized, dtype=np.uint8).reshape(1, out_h, out_w, 3)
