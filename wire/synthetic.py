"""Synthetic bottleneck features that look like the real thing, for tests and benchmarks.

Why not uniform noise: codec sizes and speeds depend on the data. A real bottleneck after a
ReLU is spatially smooth and sparse (BottleNet Sec. 2.1: "ReLU ... higher zero rates"), which
is exactly what lets JPEG/zstd win; uniform noise would make every codec look the same.
Here: Gaussian noise, box-blurred per channel, shifted so a chosen fraction falls below zero,
then ReLU. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np


def _box_blur(x: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Moving average of width 2*radius+1 along ``axis`` ('valid' mode), via cumulative sums."""
    width = 2 * radius + 1
    c = np.cumsum(x, axis=axis, dtype=np.float64)
    zero = np.zeros_like(np.take(c, [0], axis=axis))
    c = np.concatenate([zero, c], axis=axis)
    n = x.shape[axis] - width + 1
    hi = np.take(c, np.arange(width, width + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / width


def relu_features(
    shape_chw: tuple[int, int, int],
    seed: int = 0,
    sparsity: float = 0.6,
    radius: int = 2,
    peak: float = 6.0,
) -> np.ndarray:
    """float32 C×H×W, ≥ 0, about ``sparsity`` of the values exactly zero, max ≈ ``peak``."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    c, h, w = shape_chw
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((c, h + 2 * radius, w + 2 * radius))
    smooth = _box_blur(_box_blur(noise, radius, 1), radius, 2)
    smooth -= np.quantile(smooth, sparsity)
    out = np.maximum(smooth, 0.0)
    top = out.max()
    if top > 0:
        out *= peak / top
    return out.astype(np.float32)
