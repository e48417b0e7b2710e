"""Channels of a C×H×W tensor laid out as one near-square 2-D image (BottleNet Sec. 2.2).

Why: image codecs (JPEG, PNG) compress a single 2-D plane; putting each channel in its own
tile keeps the spatial correlation that the codec exploits, and a near-square aspect ratio
"achieves the maximum compression ratio" (BottleNet, following Choi & Bajić).

BottleNet arranges C channels in a grid ``2**ceil(log2(C)/2)`` tiles wide and
``2**floor(log2(C)/2)`` tiles high. That height only holds all channels when C is a power of
two (C=12 would get 4×2 = 8 tiles), so for any C we keep the paper's width and use the fewest
rows that fit::

    cols = 2 ** ceil(log2(C) / 2)   # the paper's width, for every C
    rows = ceil(C / cols)           # == the paper's 2**floor(log2(C)/2) for power-of-two C

For power-of-two C this is exactly the paper's grid (C=8 -> 4 wide × 2 high); otherwise it is
never taller than wide and at most 4:1 (C=12 -> 4×3, C=5 -> 4×2). Channel c sits at tile
(row c // cols, column c % cols), row-major. Unused tiles in the last row are zeros, which
``untile`` ignores (zeros are also what a post-ReLU tile mostly holds, so JPEG spends few bits
on them).
"""

from __future__ import annotations

import math

import numpy as np


def grid_shape(channels: int) -> tuple[int, int]:
    """(rows, cols) of tiles for ``channels`` channels."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    # ceil(log2(C)/2) == ceil(ceil(log2 C)/2); the integer form avoids float log edge cases
    k = (channels - 1).bit_length()  # ceil(log2(C)) exactly, 0 for C=1
    cols = 1 << -(-k // 2)
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
