"""A small seeded synthetic colour dataset for unit tests (results on it are labelled synthetic).

Each class is a coloured shape (disc, square, bar …) on a noisy background with random
position/size, so a model must actually look at the image, and nothing touches the disk.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

_PALETTE = np.array(
    [[230, 60, 60], [60, 200, 80], [70, 90, 230], [240, 200, 40], [200, 80, 220], [40, 210, 220]],
    dtype=np.float32,
)


class SyntheticShapes(Dataset):
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, n: int = 256, size: int = 32, num_classes: int = 4, seed: int = 0) -> None:
        if not 2 <= num_classes <= 6:
            raise ValueError(f"num_classes must be 2..6, got {num_classes}")
        rng = np.random.default_rng(seed)
        self.labels = tuple(f"synthetic-{k}" for k in range(num_classes))
        ys = rng.integers(0, num_classes, n)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        imgs = np.empty((n, size, size, 3), dtype=np.float32)
        for i, y in enumerate(ys):
            bg = rng.normal(110, 25, (size, size, 3)).astype(np.float32)
            cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
            r = rng.uniform(size * 0.15, size * 0.3)
            if y % 3 == 0:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            elif y % 3 == 1:
                mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            else:
                mask = abs(yy - cy) < r / 3
            colour = _PALETTE[y] + rng.normal(0, 10, 3)
            bg[mask] = colour
            imgs[i] = bg
        x = torch.from_numpy(np.clip(imgs, 0, 255) / 255.0).permute(0, 3, 1, 2).float()
        m = torch.tensor(self.mean).view(1, 3, 1, 1)
        s = torch.tensor(self.std).view(1, 3, 1, 1)
        self.x = (x - m) / s
        self.y = torch.from_numpy(ys.astype(np.int64))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])
