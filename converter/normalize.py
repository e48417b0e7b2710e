"""Fold the input normalisation into the head, so the board feeds raw camera pixels.

The TFLite input is uint8 RGB with scale 1/255 and zero point 0, i.e. the float value the
converted graph sees is ``pixel / 255``. Wrapping the head as ``head((x - mean) / std)``
with ``x = pixel / 255`` makes the int8 model compute exactly what PyTorch computed on
normalised float input, and the camera code needs no arithmetic of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from converter.errors import SourceModelError


class NormalizedHead(nn.Module):
    """``head((x - mean) / std)`` for x in [0, 1], NCHW."""

    def __init__(self, head: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((x - self.mean) / self.std)


def wrap_for_export(
    module: nn.Module, kind: str, mean: Sequence[float], std: Sequence[float]
) -> nn.Module:
    """The normalised head in the form its exporter needs.

    TorchScript modules only export through the legacy (TorchScript-based) ONNX exporter,
    which needs the wrapper scripted too; torch.export programs are plain modules.
    """
    wrapped = NormalizedHead(module, mean, std)
    # Only the wrapper's own flag: a torch.export module refuses train()/eval() calls, and
    # the loaded head is already in inference mode.
    wrapped.training = False
    if kind != "torchscript":
        return wrapped
    try:
        return torch.jit.script(wrapped)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        raise SourceModelError(
            "cannot wrap the TorchScript head with the input normalisation "
            f"({lines[0] if lines else 'scripting failed'}); the head must take one (N, 3, H, W) "
            "tensor and return one tensor"
        ) from None
