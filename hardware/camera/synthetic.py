"""A deterministic synthetic camera: a scrolling texture with moving shapes.

It exists so that the whole pipeline (capture → preprocess → head → wire) runs on a
machine with no camera and nothing extra installed, and so that tests can compare a frame
against what it *must* be: frame ``n`` depends only on (seed, size, n), see :meth:`render`.
Motion matters because a static image would hide latest-frame bugs (a stale frame looks
identical to a fresh one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Backoff, CameraError, CameraSource, lockstep_fps


@dataclass(frozen=True)
class _Shape:
    kind: str  # "disc" | "box"
    color: tuple[int, int, int]
    radius: int  # half-size in pixels
    x0: float
    y0: float
    vx: float  # pixels per frame
    vy: float


class SyntheticCamera(CameraSource):
    """Seeded moving shapes on a scrolling texture; needs only numpy."""

    name = "synthetic"

    def __init__(
        self,
        *,
        width: int = 640,
        height: int = 480,
        fps: float | None = 30.0,
        seed: int = 0,
        shapes: int = 6,
        backoff: Backoff | None = None,
    ) -> None:
        for key, value, low in (("width", width, 8), ("height", height, 8), ("shapes", shapes, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise CameraError(
                    f"synthetic camera: {key} must be an integer >= {low}, got {value!r}"
                )
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise CameraError(f"synthetic camera: seed must be an integer, got {seed!r}")
        # fps=0/None: no pacing and no drops (lockstep with the consumer), for evaluation runs.
        fps = lockstep_fps(fps, "synthetic")
        super().__init__(fps=fps, lockstep=fps is None, backoff=backoff)
        self.width = width
        self.height = height
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._background = self._make_background(rng, height, width)
        self._shapes = [self._make_shape(rng, height, width) for _ in range(shapes)]
        self._index = 0

    @staticmethod
    def _make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A texture twice as wide as the frame, periodic in x, so scrolling is a slice."""
        yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        xx = np.linspace(0.0, 2.0 * np.pi, 2 * width, endpoint=False, dtype=np.float32)[None, :]
        channels = []
        for c in range(3):
            fx = int(rng.integers(1, 4)) * 2  # even: the texture is periodic over one width
            fy = float(rng.uniform(2.0, 6.0))
            phase = float(rng.uniform(0, 2 * np.pi))
            wave = np.sin(fx * xx + phase) * np.cos(fy * np.pi * yy + c)
            channels.append(96 + 48 * wave + 40 * yy)
        bg = np.stack(channels, axis=-1)
        noise = rng.integers(-12, 13, size=(height, width, 3)).astype(np.float32)
        bg += np.concatenate([noise, noise], axis=1)
        return np.clip(bg, 0, 255).astype(np.uint8)

    @staticmethod
    def _make_shape(rng: np.random.Generator, height: int, width: int) -> _Shape:
        radius = int(
            rng.integers(max(2, min(height, width) // 20), max(3, min(height, width) // 6))
        )
        color = tuple(int(v) for v in rng.integers(0, 256, size=3))
        speed = max(1.0, min(height, width) / 60.0)
        return _Shape(
            kind="disc" if rng.random() < 0.5 else "box",
            color=(color[0], color[1], color[2]),
            radius=radius,
            x0=float(rng.uniform(0, width)),
            y0=float(rng.uniform(0, height)),
            vx=float(rng.uniform(-speed, speed)),
            vy=float(rng.uniform(-speed, speed)),
        )

    def render(self, n: int) -> np.ndarray:
        """Frame ``n`` (uint8 H×W×3 RGB) — a pure function of (seed, size, n)."""
        h, w = self.height, self.width
        offset = (2 * n) % w
        image = self._background[:, offset : offset + w].copy()
        for shape in self._shapes:
            r = shape.radius
            # Wrap around a canvas slightly larger than the frame so shapes leave and re-enter.
            cx = int((shape.x0 + shape.vx * n) % (w + 2 * r)) - r
            cy = int((shape.y0 + shape.vy * n) % (h + 2 * r)) - r
            y0, y1 = max(cy - r, 0), min(cy + r + 1, h)
            x0, x1 = max(cx - r, 0), min(cx + r + 1, w)
            if y0 >= y1 or x0 >= x1:
                continue
            region = image[y0:y1, x0:x1]
            if shape.kind == "box":
                region[...] = shape.color
            else:
                yy = np.arange(y0, y1)[:, None] - cy
                xx = np.arange(x0, x1)[None, :] - cx
                region[yy * yy + xx * xx <= r * r] = shape.color
        return image

    def _open(self) -> None:
        pass

    def _read(self) -> tuple[np.ndarray, str | None]:
        image = self.render(self._index)
        self._index += 1
        return image, None

    def _close(self) -> None:
        pass
