"""Top-1 on the 20 labelled ImageNet photos that ship with foolbox (real images, real labels).

20 images is a smoke-level check, not an ImageNet benchmark: it tells a working pretrained
model (~17-18/20 for EfficientNet-Lite0) from a broken one (~0/20), e.g. wrong padding
or normalisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from training.data.photos import LabeledImageNetSamples
from training.data.transforms import ImageTransform


@torch.no_grad()
def imagenet_samples_top1(
    forward: Callable[[torch.Tensor], torch.Tensor],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    size: int = 224,
) -> tuple[int, int]:
    """(correct, total) for ``forward`` (a model or head∘codec∘tail) on the foolbox samples."""
    ds = LabeledImageNetSamples(ImageTransform((size, size), mean, std, train=False))
    correct = total = 0
    for x, y in DataLoader(ds, batch_size=10):
        correct += int((forward(x).argmax(1) == y).sum())
        total += len(y)
    return correct, total
