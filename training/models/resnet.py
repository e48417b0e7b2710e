"""ResNets in plain torch with torchvision's module names, plus a small CPU-friendly one.

Attribute names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``downsample.0``, ``fc`` …) follow
torchvision exactly so a torchvision ``state_dict`` loads with ``strict=True``; the
split-point machinery only adds *views* (``segments``), never new parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from training.models.backbone import Classifier, Segment, SplittableBackbone
from training.models.registry import register_model


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck: the stride sits on the 3×3 conv."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(SplittableBackbone):
    """Split points: ``stem`` and ``rb1`` … ``rbN`` (after each residual block, as in BottleNet)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        *,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        num_classes: int = 1000,
        small_input: bool = False,
        small_stem_stride: int = 2,
    ) -> None:
        super().__init__()
        stem_width = widths[0]
        if small_input:
            # 28-96 px inputs: one 3x3 stride-2 conv and no max-pool (not 7x7/2 + pool /2):
            # 28 px -> 14x14 features at RB1, cheap enough to train on shared CPU cores.
            self.conv1 = nn.Conv2d(
                3, stem_width, 3, stride=small_stem_stride, padding=1, bias=False
            )
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self._cin = stem_width
        for i, (w, n) in enumerate(zip(widths, layers, strict=True)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, stride=1 if i == 0 else 2))
        self.num_layers = len(layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, n: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._cin, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        blocks = [block(self._cin, planes, stride, downsample)]
        self._cin = planes * block.expansion
        blocks += [block(self._cin, planes) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def segments(self) -> list[Segment]:
        segs = [Segment("stem", nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool))]
        k = 0
        for i in range(self.num_layers):
            for block in getattr(self, f"layer{i + 1}"):
                k += 1
                segs.append(Segment(f"rb{k}", block))
        return segs

    def classifier_module(self) -> nn.Module:
        return Classifier(None, self.fc)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(
            f"no offline pretrained weights ship for {name}; load a torchvision state_dict "
            "yourself with model.load_state_dict(torch.load(path), strict=True)"
        )


@register_model
def resnet18(*, num_classes: int = 1000, pretrained: bool = False) -> ResNet:
    _no_pretrained("resnet18", pretrained)
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)


@register_model
def resnet50(*, num_classes: int = 1000, pretrained: bool = False) -> ResNet:
    _no_pretrained("resnet50", pretrained)
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)


@register_model
def resnet_small(*, num_classes: int = 10, pretrained: bool = False) -> ResNet:
    """Six basic blocks at widths 16/32/64 (~0.24 M params), stride-2 3x3 stem: 28-96 px inputs."""
    _no_pretrained("resnet_small", pretrained)
    model = ResNet(
        BasicBlock, [2, 2, 2], widths=(16, 32, 64), num_classes=num_classes, small_input=True
    )
    model.default_input_size = (32, 32)
    return model
