"""Datasets: Fashion-MNIST (IDX), class folders, shipped real photos, synthetic shapes."""

from training.data.registry import DatasetBundle, build_dataset

__all__ = ["DatasetBundle", "build_dataset"]
