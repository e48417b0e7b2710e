"""Users' own data: ``root/<class name>/<image>.jpg`` (png/bmp/webp too), classes sorted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff"}


class LabelledImages(Dataset):
    """(transform(image), label) over (path, label) pairs, decoded on access.

    One reader for every labelled file list (class folders, the ImageNet sample), so an
    unreadable file is reported the same way everywhere: a ValueError naming it.
    """

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        transform: Callable[[Image.Image], torch.Tensor],
        what: str = "image",
    ) -> None:
        if not samples:
            raise ValueError(f"no {what}s to read (empty sample list)")
        self.samples = list(samples)
        self.transform = transform
        self.what = what

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert("RGB")), label
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"cannot read {self.what} {path}: {exc}") from None


class ImageFolderDataset(LabelledImages):
    def __init__(self, root: Path | str, transform: Callable[[Image.Image], torch.Tensor]):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not classes:
            raise ValueError(f"{self.root}: no class sub-folders (expected root/<class>/<img>.jpg)")
        self.labels = tuple(classes)
        samples: list[tuple[Path, int]] = []
        for idx, name in enumerate(classes):
            for path in sorted((self.root / name).rglob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    samples.append((path, idx))
        if not samples:
            raise ValueError(f"{self.root}: class folders contain no images")
        super().__init__(samples, transform)
