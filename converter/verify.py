"""Agreement figures between the int8 TFLite head and the float PyTorch head.

Computed on held-out calibration images (never used to pick the quantisation ranges), so
the figures say how the quantised head behaves on images it was not tuned to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Verification:
    n_images: int
    cosine_min: float
    cosine_mean: float
    max_abs_error: float
    mean_abs_error: float
    float_output_absmax: float
    output_scale: float
    top1_agreement: float | None = None
    tail_images: int = 0

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def cosine_per_sample(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened output; two all-zero outputs agree (1.0)."""
    a2 = a.reshape(a.shape[0], -1).astype(np.float64)
    b2 = b.reshape(b.shape[0], -1).astype(np.float64)
    na = np.linalg.norm(a2, axis=1)
    nb = np.linalg.norm(b2, axis=1)
    dot = np.sum(a2 * b2, axis=1)
    out = np.where((na == 0) & (nb == 0), 1.0, dot / np.maximum(na * nb, 1e-30))
    return out


def compare(reference: np.ndarray, quantized: np.ndarray, scale: float) -> Verification:
    """``reference`` and ``quantized`` are float arrays of the same (N, ...) shape."""
    if reference.shape != quantized.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {quantized.shape}")
    cos = cosine_per_sample(reference, quantized)
    err = np.abs(reference.astype(np.float64) - quantized.astype(np.float64))
    return Verification(
        n_images=int(reference.shape[0]),
        cosine_min=float(cos.min()),
        cosine_mean=float(cos.mean()),
        max_abs_error=float(err.max()),
        mean_abs_error=float(err.mean()),
        float_output_absmax=float(np.abs(reference).max()),
        output_scale=float(scale),
    )


def top1_agreement(logits_float: np.ndarray, logits_int8_head: np.ndarray) -> float:
    a = np.argmax(logits_float.reshape(logits_float.shape[0], -1), axis=1)
    b = np.argmax(logits_int8_head.reshape(logits_int8_head.shape[0], -1), axis=1)
    return float(np.mean(a == b))
