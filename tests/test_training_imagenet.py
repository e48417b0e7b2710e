"""The real pretrained EfficientNet-Lite0 on real labelled photos (slow: 224 px, 4.6 M params)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training.bottleneck import split_model  # noqa: E402
from training.compressor import CodecConfig  # noqa: E402
from training.data.photos import imagenet_labels  # noqa: E402
from training.evaluation import imagenet_samples_top1  # noqa: E402
from training.export import export_split  # noqa: E402
from training.models import create_model  # noqa: E402


@pytest.mark.slow
def test_efficientnet_lite0_pretrained_top1_on_shipped_imagenet_photos(torch_one_thread) -> None:
    model = create_model("efficientnet_lite0", pretrained=True).eval()
    correct, total = imagenet_samples_top1(model, model.mean, model.std)
    assert total == 20
    assert correct >= 16, f"{correct}/20: weights, padding or normalisation are off"
    # a randomly initialised Lite0 gets ~0/20, so the check can fail
    rand = create_model("efficientnet_lite0").eval()
    assert imagenet_samples_top1(rand, rand.mean, rand.std)[0] <= 3


@pytest.mark.slow
def test_lite0_split_exports_with_imagenet_labels(tmp_path: Path) -> None:
    model = create_model("efficientnet_lite0", pretrained=True)
    head, tail = split_model(model, after="stage3", channels=8, stride=2)
    assert head.spec.bottleneck_chw == (8, 14, 14)
    exp = export_split(
        head,
        tail,
        tmp_path,
        labels=imagenet_labels(),
        mean=model.mean,
        std=model.std,
        codec=CodecConfig("jpeg", 8, {"quality": 20}),
    )
    loaded = torch.jit.load(str(exp.head))
    assert tuple(loaded(torch.rand(1, 3, 224, 224)).shape) == (1, 8, 14, 14)
