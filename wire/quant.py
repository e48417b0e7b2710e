"""Uniform n-bit quantizer on top of the head's int8 output (BottleNet Sec. 2.2).

Why reuse the TFLite int8 scale/zero-point instead of BottleNet's per-tensor min/max: the
head already emits int8 with a calibrated affine map, so requantizing its integer codes needs
no float math on the board and no per-frame side information (min/max) on the wire — the
scale, zero-point and bit count travel once in HELLO.

Mapping (documented in docs/wire.md): the *full* int8 range [-128, 127] is mapped linearly
onto n-bit codes [0, 2**n - 1]::

    code = round_half_up((q + 128) * (2**n - 1) / 255)          # integer arithmetic
    q'   = code * 255 / (2**n - 1) - 128                          # real-valued
    x'   = scale * (q' - zero_point)

For bits=8 this is ``code = q + 128`` and dequantization is the exact inverse of TFLite's
``x = scale * (q - zero_point)``. TFLite calibrates a ReLU output (min 0) with
``zero_point = -128``, so for post-ReLU bottlenecks the full range *is* the
[zero_point, 127] range: real zero maps to code 0 and back to exactly 0.0, and no codes are
wasted on negative values. Mapping the full range also stays correct for a bottleneck that
is not followed by a ReLU (zero_point > -128), where negatives carry information.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX_SCALE = float(np.finfo(np.float32).max) / 256.0  # x = scale * (q - zp), |q - zp| <= 255


@dataclass(frozen=True)
class QuantParams:
    """scale/zero_point: of the head's int8 output tensor (TFLite); bits: 1..8 sent on the wire."""

    scale: float
    zero_point: int
    bits: int = 8

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)):
            raise ValueError(f"bits must be an int, got {self.bits!r}")
        if not 1 <= self.bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {self.bits}")
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"scale must be a positive finite number, got {self.scale!r}")
        # Dequantization runs in float32: a scale outside [tiny, max / 256] would become 0 or
        # inf there (numpy's "overflow encountered in cast") and turn every feature into
        # inf/NaN downstream, so refuse it here instead of clipping it to a wrong value.
        if not _F32_TINY <= self.scale <= _F32_MAX_SCALE:
            raise ValueError(
                f"scale must be within [{_F32_TINY:.3g}, {_F32_MAX_SCALE:.3g}] so that "
                f"float32 dequantization stays finite, got {self.scale!r}"
            )
        if not -128 <= int(self.zero_point) <= 127:
            raise ValueError(f"zero_point must be in -128..127, got {self.zero_point}")

    @property
    def levels(self) -> int:
        """Largest code value, 2**bits - 1."""
        return (1 << self.bits) - 1

    @property
    def code_step(self) -> float:
        """Real-valued width of one n-bit code: the quantizer's resolution."""
        return self.scale * 255.0 / self.levels


def _lut_int8_to_code(bits: int) -> np.ndarray:
    levels = (1 << bits) - 1
    u = np.arange(256, dtype=np.int32)  # q + 128
    # round half up, in integers: floor((u * L + 127.5) / 255) == (2 u L + 255) // 510
    return ((2 * u * levels + 255) // 510).astype(np.uint8)


#: Indexed by the int8 value's raw byte (``q.view(uint8)``), so no offset pass is needed;
#: ``np.take`` on a 256-entry table is ~3x faster than fancy indexing.
_LUTS = {b: _lut_int8_to_code(b)[np.arange(256) ^ 0x80] for b in range(1, 9)}


def requantize_int8(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """int8 head output -> uint8 n-bit codes 0..2**bits-1 (same shape)."""
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise ValueError(f"requantize_int8 expects int8, got {q.dtype}")
    if qp.bits == 8:
        return (q.view(np.uint8) ^ np.uint8(0x80)).astype(np.uint8, copy=False)
    return np.take(_LUTS[qp.bits], q.view(np.uint8))


def codes_to_int8_level(codes: np.ndarray, bits: int) -> np.ndarray:
    """n-bit codes -> real-valued position on the int8 grid (float32, may be fractional)."""
    levels = (1 << bits) - 1
    return codes.astype(np.float32) * np.float32(255.0 / levels) - np.float32(128.0)


def dequantize_codes(codes: np.ndarray, qp: QuantParams) -> np.ndarray:
    """uint8 n-bit codes -> float32 feature values, what the tail eats.

    For bits=8, identical to TFLite's dequantization of the original int8 tensor.
    """
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise ValueError(f"dequantize_codes expects uint8 codes, got {codes.dtype}")
    if codes.size and int(codes.max()) > qp.levels:
        raise ValueError(f"code {int(codes.max())} exceeds {qp.levels} for {qp.bits} bits")
    return np.take(_dequant_table(qp), codes)


@functools.lru_cache(maxsize=64)
def _dequant_table(qp: QuantParams) -> np.ndarray:
    """float32 value of each code, computed with the same float32 ops as the formula."""
    level = codes_to_int8_level(np.arange(qp.levels + 1, dtype=np.uint8), qp.bits)
    table = (np.float32(qp.scale) * (level - np.float32(qp.zero_point))).astype(np.float32)
    table.setflags(write=False)
    return table


def quantize_float_to_int8(x: np.ndarray, qp: QuantParams) -> np.ndarray:
    """float32 -> int8 the way TFLite's QUANTIZE op does it (round half away from zero, clamp).

    Used by training and simulation to reproduce what the board's int8 head would emit.
    """
    x = np.asarray(x, dtype=np.float32)
    v = x / np.float32(qp.scale)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    r = np.nan_to_num(r, nan=0.0, posinf=127.0 - qp.zero_point, neginf=-128.0 - qp.zero_point)
    return np.clip(r + qp.zero_point, -128, 127).astype(np.int8)
