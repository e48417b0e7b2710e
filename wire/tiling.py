"""Channels of a C×H×W tensor laid out as one near-square 2-D image (BottleNet Sec. 2.2).

Why: image codecs (JPEG, PNG) compress a single 2-D plane; putting each channel in its own
tile keeps the spatial correlation that the codec exploits, and a near-square aspect ratio
"achieves the maximum compression ratio" (BottleNet, following Choi & Bajić).

BottleNet arranges C channels in a grid of ``2**ceil(log2(C)/2)`` tiles across and
``2**floor(log2(C)/2)`` tiles down, which is exact for a power-of-two C. For any C we use::

    k    = ceil(log2(C))            # C rounded up to a power of two, as an exponent
    cols = 2 ** ceil(k / 2)         # the paper's width for that power of two
    rows = ceil(C / cols)           # only as many tile rows as needed

For power-of-two C this is exactly the paper's grid; otherwise it is the paper's grid for the
next power of two with empty trailing rows dropped (C=12 -> 4×3, not 4×4). Channel c sits at
tile (row c // cols, column c % cols), row-major. Unused tiles in the last row are filled with
zeros; ``untile`` ignores them.
"""

from __future__ import annotations

import math

import numpy as np


def grid_shape(channels: int) -> tuple[int, int]:
    """(rows, cols) of tiles for ``channels`` channels."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    k = math.ceil(math.log2(channels)) if channels > 1 else 0
    cols = 1 << math.ceil(k / 2)
    rows = math.ceil(channels / cols)
    return rows, cols


def tiled_shape(shape_chw: tuple[int, int, int]) -> tuple[int, int]:
    """(height, width) in pixels of the tiled image for a C×H×W tensor."""
    c, h, w = _check_chw(shape_chw)
    rows, cols = grid_shape(c)
    return rows * h, cols * w


def _check_chw(shape_chw: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape_chw) != 3 or not all(int(d) >= 1 for d in shape_chw):
        raise ValueError(f"expected a (C, H, W) shape of positive ints, got {shape_chw!r}")
    c, h, w = (int(d) for d in shape_chw)
    return c, h, w


def tile(codes_chw: np.ndarray) -> np.ndarray:
    """C×H×W -> (rows·H)×(cols·W) image, same dtype, zero padding in unused tiles."""
    x = np.asarray(codes_chw)
    if x.ndim != 3:
        raise ValueError(f"tile expects a C×H×W array, got shape {x.shape}")
    c, h, w = _check_chw(x.shape)
    rows, cols = grid_shape(c)
    padded = x
    if rows * cols != c:
        padded = np.zeros((rows * cols, h, w), dtype=x.dtype)
        padded[:c] = x
    # (rows, cols, h, w) -> (rows, h, cols, w) -> image
    return np.ascontiguousarray(
        padded.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    )


def untile(image: np.ndarray, shape_chw: tuple[int, int, int]) -> np.ndarray:
    """Inverse of ``tile``: the image back to C×H×W (padding tiles dropped)."""
    c, h, w = _check_chw(shape_chw)
    img = np.asarray(image)
    rows, cols = grid_shape(c)
    if img.shape != (rows * h, cols * w):
        raise ValueError(
            f"tiled image for {c}×{h}×{w} must be {rows * h}×{cols * w}, got {img.shape}"
        )
    grid = img.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(rows * cols, h, w)
    return np.ascontiguousarray(grid[:c])
