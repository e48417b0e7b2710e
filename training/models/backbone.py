"""What a splittable backbone promises: an ordered list of named segments.

Running the segments in order and then ``classify`` is *the* forward pass (``forward`` is
implemented that way), so any prefix/suffix cut is exact by construction — that is what
``split_model`` relies on. Segments reference the backbone's own submodules, so the
state_dict keeps the canonical (torchvision / upstream) names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Segment:
    """A run of layers ending at a split point; ``name`` is what users pass as ``after=``."""

    name: str
    module: nn.Module


class SplittableBackbone(nn.Module):
    """Base class: subclasses implement ``segments`` and ``classifier_module``."""

    #: channels-first input size the backbone was designed for (H, W)
    default_input_size: tuple[int, int] = (224, 224)
    #: per-channel mean/std applied to [0, 1] pixels before the network
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    #: whether segment outputs are >= 0 (ResNet blocks end in ReLU); shapes the restoration
    features_nonnegative: bool = True

    def segments(self) -> list[Segment]:
        raise NotImplementedError

    def classifier_module(self) -> nn.Module:
        """The layers after the last segment (pooling, linear), as a module for the tail."""
        raise NotImplementedError

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        # classifier_module() builds a fresh wrapper, and a fresh nn.Module is in training
        # mode: without this its dropout would fire inside an eval()'d teacher and make
        # every "teacher logit" a random draw.
        head = self.classifier_module()
        head.train(self.training)
        return head(x)

    def split_points(self) -> list[str]:
        """Names valid for ``split_model(after=...)``: after the stem and after every block
        (BottleNet places its bottleneck after any of ResNet-50's 16 residual blocks)."""
        return [s.name for s in self.segments()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for seg in self.segments():
            x = seg.module(x)
        return self.classify(x)


class Classifier(nn.Module):
    """Global average pool + dropout + linear: the part after the last segment."""

    def __init__(self, pre: nn.Module | None, fc: nn.Linear, dropout: float = 0.0) -> None:
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.drop(x))
