"""Bit packing: n-bit codes (one per uint8) <-> bytes, ``bits`` bits each, MSB first.

Why a module of its own: it is the byte layout of the ``raw`` payload (and of the input to
``zstd``), a job with its own golden hashes and property tests, independent of which codec
wraps it. Vectorised: eight codes are one 64-bit word squeezed by three shift/mask steps.
"""

from __future__ import annotations

import numpy as np

from wire.errors import CodecError


def packed_size(n_values: int, bits: int) -> int:
    """Bytes that ``n_values`` codes of ``bits`` bits take, the last byte zero-padded."""
    return (n_values * bits + 7) // 8


def _lane_mask(lane: int, lo: int, hi: int) -> np.uint64:
    """uint64 with bits [lo, hi) set in every ``lane``-bit lane."""
    m = 0
    for start in range(0, 64, lane):
        m |= ((1 << (hi - lo)) - 1) << (start + lo)
    return np.uint64(m)


def _merge_steps(bits: int) -> list[tuple[np.uint64, np.uint64, np.uint64, np.uint64]]:
    """Shift/mask steps that squeeze 8 one-byte codes of a uint64 into its low 8*bits bits.

    Step k halves the number of groups: in each 2^k-byte lane the upper group (at bit
    ``half``) slides down next to the lower one (at bit ``width``). Bits that spill into the
    neighbouring lane land at or above ``2*width`` and are masked off, because
    ``half >= width`` at every step.
    """
    steps = []
    for lane, half, width in ((16, 8, bits), (32, 16, 2 * bits), (64, 32, 4 * bits)):
        steps.append(
            (
                np.uint64(half - width),
                _lane_mask(lane, 0, width),  # lower group, stays put
                _lane_mask(lane, width, 2 * width),  # upper group after packing
                _lane_mask(lane, half, half + width),  # upper group before packing
            )
        )
    return steps


_MERGE = {b: _merge_steps(b) for b in range(1, 8)}


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Flat uint8 codes (< 2**bits) -> bytes, ``bits`` per value, MSB first.

    Eight codes are one ``8*bits``-bit group: read as a big-endian uint64, squeezed with
    three shift/mask steps (``_merge_steps``), written back big-endian, top bytes dropped.
    A handful of vector ops on N/8 words instead of per-bit shuffling.
    """
    flat = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return flat.tobytes()
    n = flat.size
    groups = -(-n // 8)
    if n % 8:
        flat = np.concatenate([flat, np.zeros(groups * 8 - n, dtype=np.uint8)])
    x = flat.view(">u8").astype(np.uint64)
    for shift, lo, hi, _ in _MERGE[bits]:
        x = (x & lo) | ((x >> shift) & hi)
    out = x.astype(">u8").view(np.uint8).reshape(groups, 8)[:, 8 - bits :]
    return out.tobytes()[: packed_size(n, bits)]


def unpack_bits(data: bytes, n_values: int, bits: int) -> np.ndarray:
    """Inverse of ``pack_bits``; CodecError if the length or the padding bits are wrong."""
    want = packed_size(n_values, bits)
    if len(data) != want:
        raise CodecError(f"packed payload is {len(data)} bytes, expected {want}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if bits == 8:
        return buf.copy()
    pad = want * 8 - n_values * bits
    if pad and int(buf[-1]) & ((1 << pad) - 1):
        raise CodecError("non-zero padding bits in packed payload")
    groups = -(-n_values // 8)
    wide = np.zeros((groups, 8), dtype=np.uint8)
    if groups * bits == want:
        wide[:, 8 - bits :] = buf.reshape(groups, bits)
    else:
        body = np.zeros(groups * bits, dtype=np.uint8)
        body[:want] = buf
        wide[:, 8 - bits :] = body.reshape(groups, bits)
    x = wide.view(">u8").reshape(groups).astype(np.uint64)
    for shift, lo, _, up in reversed(_MERGE[bits]):
        x = (x & lo) | ((x << shift) & up)
    return x.astype(">u8").view(np.uint8)[:n_values].copy()
