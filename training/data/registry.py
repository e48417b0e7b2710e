"""One entry point from a CLI ``--data`` value to train/val datasets plus their metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from training.data.fashion_mnist import FashionMNIST
from training.data.folder import ImageFolderDataset
from training.data.photos import LabeledImageNetSamples, imagenet_labels
from training.data.synthetic import SyntheticShapes
from training.data.transforms import ImageTransform

BUILTIN = ("fashion-mnist", "synthetic", "imagenet-samples")


@dataclass
class DatasetBundle:
    name: str
    train: Dataset | None  # None: evaluation-only data
    val: Dataset
    labels: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_hw: tuple[int, int]
    synthetic: bool = False

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train_size": 0 if self.train is None else len(self.train),  # type: ignore[arg-type]
            "val_size": len(self.val),  # type: ignore[arg-type]
            "num_classes": len(self.labels),
            "input_hw": list(self.input_hw),
            "synthetic": self.synthetic,
        }


def build_dataset(
    spec: str,
    *,
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    limit_train: int | None = None,
    limit_val: int | None = None,
    fashion_root: Path | str | None = None,
    seed: int = 0,
) -> DatasetBundle:
    """``spec`` is a built-in name (``fashion-mnist``, ``synthetic``, ``imagenet-samples``)
    or a folder laid out as ``class/xxx.jpg`` (split 80/20 into train/val, seeded)."""
    if spec == "fashion-mnist":
        if input_size not in (None, 28):
            raise ValueError("fashion-mnist is served at its native 28 px (omit --input-size)")
        train = FashionMNIST("train", fashion_root, limit=limit_train, seed=seed, augment=True)
        val = FashionMNIST("test", fashion_root, limit=limit_val, seed=seed)
        return DatasetBundle(
            spec, train, val, FashionMNIST.labels, FashionMNIST.mean, FashionMNIST.std, (28, 28)
        )
    if spec == "synthetic":
        size = input_size or 32
        train = SyntheticShapes(limit_train or 512, size, seed=seed)
        val = SyntheticShapes(limit_val or 128, size, seed=seed + 1)
        return DatasetBundle(
            spec, train, val, train.labels, train.mean, train.std, (size, size), synthetic=True
        )
    if spec == "imagenet-samples":
        size = input_size or 224
        m, s = mean or (0.485, 0.456, 0.406), std or (0.229, 0.224, 0.225)
        val = LabeledImageNetSamples(ImageTransform((size, size), m, s, train=False))
        return DatasetBundle(spec, None, val, tuple(imagenet_labels()), m, s, (size, size))
    path = Path(spec)
    if not path.is_dir():
        raise ValueError(
            f"--data {spec!r} is neither a built-in dataset ({', '.join(BUILTIN)}) nor a folder"
        )
    size = input_size or 96
    m, s = mean or (0.485, 0.456, 0.406), std or (0.229, 0.224, 0.225)
    train_full = ImageFolderDataset(path, ImageTransform((size, size), m, s, train=True, seed=seed))
    val_full = ImageFolderDataset(path, ImageTransform((size, size), m, s, train=False))
    n = len(train_full)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, n // 5) if n > 1 else 0
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if limit_train:
        train_idx = train_idx[:limit_train]
    if limit_val:
        val_idx = val_idx[:limit_val]
    if not train_idx or not val_idx:
        raise ValueError(f"{path}: need at least 2 images to make train and val splits")
    return DatasetBundle(
        str(path),
        Subset(train_full, train_idx),
        Subset(val_full, val_idx),
        train_full.labels,
        m,
        s,
        (size, size),
    )
