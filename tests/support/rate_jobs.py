"""The tiny rate-trained split the entropy-model tests train: synthetic 32x32 shapes,
ResNet cut after ``rb1``, a 2-channel bottleneck with the learned prior and the ``rans``
codec.

Why one place: the export test and the end-to-end test train the same job and differ only
in the coder's lanes and how many training images they can afford; spelling the job out
twice let the two drift apart (one changing ``after`` or the rate weight would silently
test another split than the other).
"""

from __future__ import annotations

from training.compressor import CodecConfig
from training.pipeline import TrainJob


def tiny_rate_job(
    *, bits: int, lanes: int, limit_train: int, rate_weight: float = 0.01
) -> TrainJob:
    """One epoch on ``limit_train`` synthetic images; ``bits``-bit codes, ``lanes``-lane rANS."""
    return TrainJob(
        data="synthetic",
        model="resnet_small",
        after="rb1",
        channels=2,
        stride=2,
        codec=CodecConfig("rans", bits, {"lanes": lanes}),
        epochs=1,
        batch_size=32,
        limit_train=limit_train,
        limit_val=32,
        threads=1,
        progress=False,
        device="cpu",
        rate_weight=rate_weight,
    )
