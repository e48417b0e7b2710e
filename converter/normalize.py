"""Fold the input normalisation into the head, so the board feeds raw camera pixels.

The TFLite input is uint8 RGB with scale 1/255 and zero point 0, i.e. the float value the
converted graph sees is ``pixel / 255``. Wrapping the head as ``head((x - mean) / std)``
with ``x = pixel / 255`` makes the int8 model compute exactly what PyTorch computed on
normalised float input, and the camera code needs no arithmetic of its own.

The affine is written as a per-channel 1×1 (depthwise) conv, weight ``1/std``, bias
``-mean/std``, not as ``(x - mean) / std``: the latter becomes an int8 SUB and an int8 MUL,
each broadcasting a 3-vector over the image and each requantising (two rounding steps),
while the conv is one int8 op with one rounding (measured on the ResNet-50 head: 0.3 ms
faster, cosine vs PyTorch 0.99984 instead of 0.99974). It is not folded into the head's
first conv: TFLite pads an int8 conv with its input's zero point, i.e. pixel 0, whose
normalised value is ``-mean/std`` (about -2), whereas the trained network was padded with
normalised 0 (the mean pixel). A fold would change every border output; a per-channel
"pad with the mean" has no int8 TFLite op.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from converter.errors import SourceModelError


class NormalizedHead(nn.Module):
    """``head((x - mean) / std)`` for x in [0, 1], NCHW, as a depthwise 1×1 conv."""

    def __init__(self, head: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.head = head
        m = torch.tensor(list(mean), dtype=torch.float64)
        s = torch.tensor(list(std), dtype=torch.float64)
        self.register_buffer("scale", (1.0 / s).to(torch.float32).view(3, 1, 1, 1))
        self.register_buffer("shift", (-m / s).to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.conv2d(x, self.scale, self.shift, groups=3))


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
