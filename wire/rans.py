"""A static rANS coder in numpy, interleaved over lanes, driven by per-channel frequency tables.

Why this coder: a learned entropy model (training's factorized prior) gives each channel of
the bottleneck its own symbol distribution; coding with those tables costs close to the
model's rate. The usual coders (constriction, range-coder) ship x86_64 wheels only, and the
board must install from aarch64 wheels, so this is numpy alone. A scalar rANS loop in
Python costs microseconds per symbol; here ``lanes`` independent rANS states advance
together, one numpy operation per step for all lanes, so a frame of N symbols costs about
N / lanes numpy steps (Giesen, "Interleaved entropy coders", 2014).

The format (all little-endian), for N symbols in C,H,W order, symbol k in lane k % lanes:

- ``min(lanes, N)`` final encoder states, u32 each, in ``[2**16, 2**32)``;
- the renormalization words, u16 each, in the order the decoder consumes them.

Encoder states start at ``2**16``; a decoder that does not end every lane there, runs out of
words or has words left over was handed a corrupt payload (:class:`~wire.errors.CodecError`).
The work and memory of a decode are bounded by the shape, never by the payload: it runs
``ceil(N / lanes)`` steps and reads at most one word per symbol.

Parameters: ``PREC = 12`` (each channel's frequencies sum to 4096; every symbol keeps a
frequency of at least 1 so any code is encodable), 32-bit states, 16-bit words. All
arithmetic fits in uint32.
"""

from __future__ import annotations

import numpy as np

from wire.errors import CodecError

__all__ = ["PREC", "RansCoder", "quantize_pmf"]

PREC = 12
_M = 1 << PREC
_LOW = 1 << 16  # lower end of the state interval; states live in [_LOW, 2**32)
_U32 = np.uint32


def quantize_pmf(pmf: np.ndarray) -> np.ndarray:
    """Per-channel probabilities (C, K) -> integer frequencies (C, K), each row summing to 4096.

    Every symbol keeps a frequency >= 1 (a symbol training never produced must still be
    encodable on the board); the remainder goes by largest fractional part, so the table is
    a deterministic function of ``pmf``.
    """
    p = np.asarray(pmf, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1 or p.shape[1] > _M // 2:
        raise CodecError(
            f"pmf must be (channels, symbols) with 1..{_M // 2} symbols, got {p.shape}"
        )
    if not np.isfinite(p).all() or (p < 0).any():
        raise CodecError("pmf must be finite and non-negative")
    sums = p.sum(axis=1, keepdims=True)
    p = np.where(sums > 0, p / np.where(sums > 0, sums, 1), 1.0 / p.shape[1])
    k = p.shape[1]
    budget = _M - k  # one count per symbol is reserved
    raw = p * budget
    freq = np.floor(raw).astype(np.int64)
    short = budget - freq.sum(axis=1)
    order = np.argsort(-(raw - freq), axis=1, kind="stable")
    for row in range(p.shape[0]):
        freq[row, order[row, : short[row]]] += 1
    return (freq + 1).astype(np.uint16)


class RansCoder:
    """Codes one fixed-shape tensor of symbols with fixed per-channel frequencies.

    ``freq`` is (C, K) with rows summing to 4096 and no zero; the symbols are (C, H, W)
    with values < K. Everything that depends only on the shape and the tables (the lane
    layout, the decode lookup tables) is built once here, so a frame only pays the steps.
    """

    def __init__(self, freq: np.ndarray, shape_chw: tuple[int, int, int], lanes: int) -> None:
        freq = np.asarray(freq)
        c, h, w = shape_chw
        if freq.ndim != 2 or freq.shape[0] != c:
            raise CodecError(f"rANS tables have shape {freq.shape}, expected ({c}, symbols)")
        if (freq < 1).any() or (freq.astype(np.int64).sum(axis=1) != _M).any():
            raise CodecError(f"rANS tables: every frequency >= 1 and each row summing to {_M}")
        if lanes < 1:
            raise CodecError(f"rANS needs at least one lane, got {lanes}")
        self.k = int(freq.shape[1])
        self.shape_chw = (int(c), int(h), int(w))
        self.n = c * h * w
        self.lanes = min(int(lanes), self.n)
        self.steps = -(-self.n // self.lanes)
        self.last = self.n - (self.steps - 1) * self.lanes  # lanes active in the last step
        f = freq.astype(np.uint32)
        cum = np.zeros_like(f)
        cum[:, 1:] = np.cumsum(f, axis=1)[:, :-1]
        self._freq_flat = f.reshape(-1)
        self._cum_flat = cum.reshape(-1)
        # symbol k's channel, laid out (steps, lanes); the padding of the last step is never read
        chan = np.zeros(self.steps * self.lanes, dtype=np.int64)
        chan[: self.n] = np.arange(self.n) // (h * w)
        self._chan_k = (chan * self.k).reshape(self.steps, self.lanes)
        self._chan_m = (chan * _M).astype(np.uint32).reshape(self.steps, self.lanes)
        # decode tables, per channel and slot: the symbol, its frequency, slot - cum
        sym = np.repeat(np.tile(np.arange(self.k), c), f.reshape(-1).astype(np.int64))
        sym = sym.reshape(c, _M)
        self._dec_sym = sym.astype(np.uint8).reshape(-1)
        self._dec_freq = np.take_along_axis(f, sym, axis=1).reshape(-1)
        slot = np.arange(_M, dtype=np.uint32)[None, :]
        self._dec_bias = (slot - np.take_along_axis(cum, sym, axis=1)).reshape(-1)
        self.max_size = 4 * self.lanes + 2 * self.n  # at most one word per symbol

    # -------------------------------------------------------------------------- encode

    def encode(self, symbols: np.ndarray) -> bytes:
        """(C, H, W) uint8 symbols < K -> payload bytes."""
        sym = np.asarray(symbols).reshape(-1)
        if sym.size != self.n:
            raise CodecError(f"rANS got {sym.size} symbols, expected {self.n}")
        if sym.size and int(sym.max()) >= self.k:
            raise CodecError(f"symbol {int(sym.max())} outside the tables' 0..{self.k - 1}")
        flat = np.zeros(self.steps * self.lanes, dtype=np.int64)
        flat[: self.n] = sym
        idx = flat.reshape(self.steps, self.lanes) + self._chan_k
        freq = self._freq_flat[idx]
        cum = self._cum_flat[idx]
        limit = freq << _U32(20)  # ((_LOW >> PREC) << 16) * f: renormalize at or above this
        x = np.full(self.lanes, _LOW, dtype=np.uint32)
        chunks: list[np.ndarray] = []
        for t in range(self.steps - 1, -1, -1):
            n = self.last if t == self.steps - 1 else self.lanes
            xs = x[:n]
            f = freq[t, :n]
            out = xs >= limit[t, :n]
            if out.any():
                chunks.append(xs[out].astype("<u2"))
                xs[out] >>= _U32(16)
            q = xs // f
            xs[:] = (q << _U32(PREC)) + (xs - q * f) + cum[t, :n]
        words = np.concatenate(chunks[::-1]) if chunks else np.zeros(0, "<u2")
        return x.astype("<u4").tobytes() + words.tobytes()

    # -------------------------------------------------------------------------- decode

    def decode(self, data: bytes) -> np.ndarray:
        """Payload bytes -> (C, H, W) uint8 symbols; CodecError on anything but a valid payload."""
        head = 4 * self.lanes
        if len(data) < head:
            raise CodecError(
                f"rANS payload of {len(data)} bytes is shorter than its {head}-byte states"
            )
        if len(data) > self.max_size:
            raise CodecError(
                f"rANS payload of {len(data)} bytes exceeds the {self.max_size} possible"
            )
        if (len(data) - head) % 2:
            raise CodecError("rANS payload has an odd number of word bytes (truncated?)")
        x = np.frombuffer(data, "<u4", self.lanes).astype(np.uint32)
        if (x < _LOW).any():
            raise CodecError("rANS payload carries a state below 2**16 (corrupt)")
        words = np.frombuffer(data, "<u2", offset=head).astype(np.uint32)
        out = np.empty((self.steps, self.lanes), dtype=np.uint8)
        pos = 0
        total = words.size
        for t in range(self.steps):
            n = self.last if t == self.steps - 1 else self.lanes
            xs = x[:n]
            slot = xs & _U32(_M - 1)
            idx = self._chan_m[t, :n] + slot
            out[t, :n] = self._dec_sym[idx]
            xs[:] = self._dec_freq[idx] * (xs >> _U32(PREC)) + self._dec_bias[idx]
            low = xs < _LOW
            k = int(np.count_nonzero(low))
            if k:
                if pos + k > total:
                    raise CodecError("rANS payload ends early (truncated)")
                xs[low] = (xs[low] << _U32(16)) | words[pos : pos + k]
                pos += k
        if pos != total:
            raise CodecError(f"{2 * (total - pos)} trailing bytes after the rANS words")
        if (x != _LOW).any():
            raise CodecError("rANS states do not return to their start (corrupt payload)")
        return out.reshape(-1)[: self.n].reshape(self.shape_chw)
