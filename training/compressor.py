"""The compressor inside the training loop (BottleNet Sec. 2.2, compression-aware training).

Forward runs the *same* wire code the board and server run —
``wire.codecs.FeatureCodec.roundtrip_float``: float -> int8 (the head's TFLite output
quantization) -> n-bit codes -> tiled 2-D image -> JPEG/PNG/zstd/raw -> back to float.
Backward treats compressor + decompressor as the identity (straight-through), which is
BottleNet's trick for training through a non-differentiable lossy codec.

Which quantization scale: the head ends in a bounded activation, output in [0, out_max]
(ReLU6 -> out_max = 6). The int8 head's output tensor therefore gets
scale = out_max / 255 and zero_point = -128 (real 0 -> -128, out_max -> 127), known before
any conversion. ``quant_params_for`` computes it; export records it in the manifests, and
``convert-head`` should pin the head's output range to [0, out_max] so the board uses the
very scale the tail was trained with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from wire.codecs import FeatureCodec
from wire.quant import QuantParams, dequantize_codes, quantize_float_to_int8, requantize_int8

Roundtrip = Callable[[np.ndarray], np.ndarray]


def quant_params_for(out_max: float, bits: int = 8) -> QuantParams:
    """int8 output quantization of a head whose output lies in [0, out_max]."""
    return QuantParams(scale=float(out_max) / 255.0, zero_point=-128, bits=bits)


@dataclass(frozen=True)
class CodecConfig:
    """A wire codec choice, as on the CLI and in manifests: name, bits, codec params."""

    name: str = "jpeg"
    bits: int = 8
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "bits": self.bits, "params": dict(self.params)}


def quantize_roundtrip(qp: QuantParams) -> Roundtrip:
    """Quantizer only (int8 -> n-bit -> float), no entropy coder: what a lossless codec sees."""

    def fn(x: np.ndarray) -> np.ndarray:
        return dequantize_codes(requantize_int8(quantize_float_to_int8(x, qp), qp), qp)

    return fn


def wire_roundtrip(
    shape_chw: tuple[int, int, int], out_max: float, codec: CodecConfig
) -> Roundtrip:
    """The device/server codec itself (``wire.codecs.FeatureCodec``) as a batch roundtrip."""
    fc = FeatureCodec(
        tuple(int(v) for v in shape_chw),
        quant_params_for(out_max, codec.bits),
        codec.name,
        dict(codec.params),
    )
    return fc.roundtrip_float


class RandomChoiceRoundtrip:
    """Pick one of several codec settings per batch (seeded): one tail for many JPEG qualities.

    Training with a quality drawn per batch gives a single compression-aware model that
    works across the qualities the device may switch between at run time.
    """

    def __init__(self, roundtrips: list[Roundtrip], seed: int = 0) -> None:
        if not roundtrips:
            raise ValueError("need at least one roundtrip")
        self.roundtrips = list(roundtrips)
        self._rng = np.random.default_rng(seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.roundtrips[int(self._rng.integers(len(self.roundtrips)))](x)


class _StraightThrough(torch.autograd.Function):
    """y = roundtrip(x) in the forward pass; dL/dx = dL/dy in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, roundtrip: Roundtrip) -> torch.Tensor:  # type: ignore[override]
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = np.ascontiguousarray(roundtrip(arr), dtype=np.float32)
        if out.shape != arr.shape:
            raise ValueError(f"codec roundtrip changed the shape {arr.shape} -> {out.shape}")
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad, None


def straight_through(x: torch.Tensor, roundtrip: Roundtrip) -> torch.Tensor:
    return _StraightThrough.apply(x, roundtrip)


class CompressorLayer(nn.Module):
    """Codec + decodec between head and tail; ``enabled=False`` makes it the identity."""

    def __init__(self, roundtrip: Roundtrip | None, description: dict | None = None) -> None:
        super().__init__()
        self.roundtrip = roundtrip
        self.description = description or {}
        self.enabled = roundtrip is not None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.enabled or self.roundtrip is None:
            return z
        return straight_through(z, self.roundtrip)
