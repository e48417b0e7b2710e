"""Fashion-MNIST from its IDX ``.gz`` files (Debian ``dataset-fashion-mnist``, MIT licence).

``make data`` puts the four files in ``vendor/fashion-mnist/``; nothing downloads here.
Images are 28×28 grayscale; they are served as 3 identical channels so the same backbones
and the same RGB head input serve photos and Fashion-MNIST alike.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Statistics of the 60k training images, on [0, 1] pixels (same for the 3 copies).
MEAN = (0.2860, 0.2860, 0.2860)
STD = (0.3530, 0.3530, 0.3530)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
ENV_VAR = "SPLITFIT_FASHION_MNIST"


class DatasetMissing(FileNotFoundError):
    """A built-in dataset's files are not where they should be."""


def default_root() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "vendor" / "fashion-mnist"


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: truncated IDX file")
    magic, count = struct.unpack(">II", data[:8])
    if magic != expected_magic:
        raise ValueError(f"{path}: bad IDX magic {magic:#x}, expected {expected_magic:#x}")
    if expected_magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        arr = np.frombuffer(data, dtype=np.uint8, offset=16)
        if arr.size != count * rows * cols:
            raise ValueError(f"{path}: expected {count}x{rows}x{cols} pixels, got {arr.size}")
        return arr.reshape(count, rows, cols)
    arr = np.frombuffer(data, dtype=np.uint8, offset=8)
    if arr.size != count:
        raise ValueError(f"{path}: expected {count} labels, got {arr.size}")
    return arr


def load_arrays(
    split: str = "train", root: Path | str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N×28×28, labels uint8 N) of one split."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else default_root()
    paths = [root / name for name in FILES[split]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetMissing(
            f"Fashion-MNIST not found ({', '.join(missing)}); run `make data` "
            f"or point {ENV_VAR} / --fashion-root at a folder with the IDX .gz files"
        )
    images = _read_idx(paths[0], 0x803)
    labels = _read_idx(paths[1], 0x801)
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} images but {len(labels)} labels")
    return images, labels


class FashionMNIST(Dataset):
    """In-memory tensors: (3×28×28 normalised float, label). ``limit`` takes a seeded subset."""

    labels = LABELS
    mean = MEAN
    std = STD

    def __init__(
        self,
        split: str = "train",
        root: Path | str | None = None,
        *,
        limit: int | None = None,
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        images, labels = load_arrays(split, root)
        if limit is not None and limit < len(images):
            idx = np.random.default_rng(seed).permutation(len(images))[:limit]
            idx.sort()
            images, labels = images[idx], labels[idx]
        x = torch.from_numpy(images.copy()).float().div_(255.0)
        self.x = ((x - MEAN[0]) / STD[0]).unsqueeze(1)  # N×1×28×28, expanded lazily
        self.y = torch.from_numpy(labels.astype(np.int64))
        self.augment = augment
        self._gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.x[i]
        if self.augment and torch.rand(1, generator=self._gen).item() < 0.5:
            x = x.flip(-1)
        return x.expand(3, -1, -1), int(self.y[i])
