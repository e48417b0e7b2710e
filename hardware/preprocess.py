"""Camera frame → the head's input tensor: shorter-side resize, centre crop, uint8 NHWC.

No normalisation happens here: the converter folds mean/std into the int8 head, so the
board ships raw pixels and never does float math per pixel. Calibration images for the
converter should go through this same function so the head sees identically prepared
inputs on and off the board.

Speed: the crop is expressed as a *box* on the source, so Pillow crops and resizes in one
pass, and ``reducing_gap=1.0`` lets it first shrink by an integer factor with a cheap box
filter (``Image.reduce``) before the antialiased bilinear step. For 640×480 → 224×224 that
halves the work of a plain resize-then-crop (see ``benchmarks/capture.py``).

``backend="opencv"`` does the same geometry with OpenCV (integer-factor ``INTER_AREA``
reduce of the crop, then bilinear), several times faster where Pillow is slow (small ARM
boards). It differs from the Pillow result by a fraction of a grey level on average (the
crop is snapped to whole pixels), so Pillow stays the default: calibration images for the
converter go through the same code, and the two should match bit for bit.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BILINEAR
REDUCING_GAP = 1.0
MAX_REDUCE_FACTOR = 256
BACKENDS = ("pillow", "opencv")


def crop_box(
    height: int, width: int, size: tuple[int, int], resize_ratio: float = 1.0
) -> tuple[float, float, float, float]:
    """The centred source region (left, top, right, bottom) whose shorter-side resize fills ``size``.

    ``resize_ratio`` > 1 resizes the shorter side to ``ratio × size`` before the crop, i.e.
    the classic ImageNet evaluation view (256 → 224 is 8/7): a head trained and evaluated on
    that view should see the same field of view on the board.

    Float coordinates: Pillow resamples sub-pixel boxes exactly, so the crop is centred
    even when the scaled margin is an odd number of pixels.
    """
    out_h, out_w = size
    scale = max(out_h / height, out_w / width) * resize_ratio
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


def _as_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Validate and view ``image`` as uint8 H×W×3 (no copy for RGB/RGBA arrays)."""
    if isinstance(image, Image.Image):
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"preprocess: expected a numpy array or PIL image, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"preprocess: expected uint8 pixels, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"preprocess: expected an H×W×3 RGB image, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"preprocess: empty image of shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def _to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image) and image.mode == "RGB":
        return image
    return Image.fromarray(np.ascontiguousarray(_as_rgb_array(image)), "RGB")


_cv2: Any = None


def _import_cv2() -> Any:
    global _cv2
    if _cv2 is None:
        try:
            _cv2 = importlib.import_module("cv2")
        except ImportError as exc:
            raise ValueError(
                "preprocess: backend 'opencv' needs opencv-python (pip install 'splitfit[opencv]')"
            ) from exc
    return _cv2


def _preprocess_opencv(image: np.ndarray, out_h: int, out_w: int, ratio: float) -> np.ndarray:
    cv2 = _import_cv2()
    h, w = image.shape[:2]
    left, top, right, bottom = crop_box(h, w, (out_h, out_w), ratio)
    x0, y0 = round(left), round(top)
    x1, y1 = max(round(right), x0 + 1), max(round(bottom), y0 + 1)
    crop = image[y0:y1, x0:x1]
    factor = int(min((y1 - y0) / out_h, (x1 - x0) / out_w))
    if factor >= 2:
        # INTER_AREA with an exact integer factor is a plain box average (OpenCV's fast path).
        ch, cw = (y1 - y0) // factor, (x1 - x0) // factor
        crop = cv2.resize(
            crop[: ch * factor, : cw * factor], (cw, ch), interpolation=cv2.INTER_AREA
        )
    interpolation = cv2.INTER_AREA if crop.shape[0] > out_h else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(crop), (out_w, out_h), interpolation=interpolation)
    return out.reshape(1, out_h, out_w, 3)


def preprocess(
    image: np.ndarray | Image.Image,
    size: tuple[int, int] = (224, 224),
    *,
    resize_ratio: float = 1.0,
    backend: str = "pillow",
) -> np.ndarray:
    """Resize the shorter side to fit, centre-crop to ``size`` = (H, W); uint8 (1, H, W, 3).

    Accepts uint8 RGB (H×W×3), RGBA (alpha dropped) or greyscale (H×W), or a PIL image.
    ``resize_ratio`` (>= 1): resize the shorter side to ``ratio × size`` first, then crop
    (see :func:`crop_box`); 1.0 keeps the widest centred view.
    """
    out_h, out_w = _validate_size(size)
    try:
        ratio = float(resize_ratio)
    except (TypeError, ValueError):
        raise ValueError(
            f"preprocess: resize_ratio must be a number, got {resize_ratio!r}"
        ) from None
    if not 1.0 <= ratio <= 4.0:
        raise ValueError(f"preprocess: resize_ratio must be in [1, 4], got {resize_ratio!r}")
    if backend == "opencv":
        return _preprocess_opencv(_as_rgb_array(image), out_h, out_w, ratio)
    if backend != "pillow":
        raise ValueError(f"preprocess: backend must be one of {BACKENDS}, got {backend!r}")
    pil = _to_pil(image)
    box = crop_box(pil.height, pil.width, (out_h, out_w), ratio)
    # Pillow's integer reduce is exact up to a factor of 256 and drifts beyond (a flat
    # grey 437×437 → 1×1 comes out 2 levels off); widen the gap so it never goes past.
    shrink = max((box[2] - box[0]) / out_w, (box[3] - box[1]) / out_h)
    gap = max(REDUCING_GAP, shrink / MAX_REDUCE_FACTOR)
    resized = pil.resize((out_w, out_h), RESAMPLE, box=box, reducing_gap=gap)
    # np.array (not asarray): Pillow hands out a read-only buffer; consumers may write.
    return np.array(resized, dtype=np.uint8).reshape(1, out_h, out_w, 3)
