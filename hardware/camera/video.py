"""A video file as a camera, looping by default.

OpenCV (the ``opencv`` extra) reads real video containers (MP4, AVI, MKV …). Without it,
Pillow still reads animated GIF / WebP / APNG and multi-page TIFF, which is enough for a
demo clip on a board that never installed OpenCV. The backend is chosen per file, and the
choice is visible (``.backend``) so a surprising result can be traced.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import Backoff, CameraError, CameraSource, EndOfStream, lockstep_fps

PILLOW_SUFFIXES = (".gif", ".webp", ".png", ".apng", ".tif", ".tiff")
BACKENDS = ("auto", "opencv", "pillow")


def import_cv2() -> Any:
    """Import OpenCV or fail with the install hint (it is an optional extra)."""
    try:
        return importlib.import_module("cv2")
    except ImportError as exc:
        raise CameraError(
            "OpenCV is not installed: pip install 'splitfit[opencv]' (or opencv-python)"
        ) from exc


class _PillowFrames:
    """Frames of an animated image, decoded lazily with ``seek``."""

    def __init__(self, path: Path) -> None:
        try:
            self._im = Image.open(path)
        except (OSError, ValueError) as exc:
            raise CameraError(f"video camera: Pillow cannot read {path}: {exc}") from exc
        self.count = getattr(self._im, "n_frames", 1)
        duration = self._im.info.get("duration")
        self.native_fps = 1000.0 / duration if duration else None
        self._pos = 0

    def read(self) -> np.ndarray | None:
        if self._pos >= self.count:
            return None
        self._im.seek(self._pos)
        self._pos += 1
        return np.asarray(self._im.convert("RGB"))

    def rewind(self) -> None:
        self._pos = 0

    def close(self) -> None:
        self._im.close()


class _OpenCVFrames:
    def __init__(self, path: Path) -> None:
        self._cv2 = import_cv2()
        self._cap = self._cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"video camera: OpenCV cannot open {path} (unsupported or corrupt?)")
        fps = float(self._cap.get(self._cv2.CAP_PROP_FPS) or 0.0)
        self.native_fps = fps if 0 < fps < 1000 else None

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            return self._cv2.cvtColor(frame, self._cv2.COLOR_GRAY2RGB)
        return self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)

    def rewind(self) -> None:
        self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)

    def close(self) -> None:
        self._cap.release()


class VideoFileCamera(CameraSource):
    """Frames of a video file; ``fps``: a number, ``"native"`` (the file's rate), or 0/None
    (every frame once, in lockstep with the consumer)."""

    name = "video"

    def __init__(
        self,
        *,
        path: str | Path,
        fps: float | str | None = None,
        loop: bool = True,
        backend: str = "auto",
        backoff: Backoff | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise CameraError(f"video camera: backend must be one of {BACKENDS}, got {backend!r}")
        if not isinstance(loop, bool):
            raise CameraError(f"video camera: loop must be true or false, got {loop!r}")
        if isinstance(fps, str) and fps != "native":
            raise CameraError(
                f"video camera: fps must be a number, 'native' or omitted, got {fps!r}"
            )
        self.path = Path(path).expanduser()
        self.loop = loop
        self.requested_backend = backend
        self.backend: str | None = None
        self._native = fps == "native"
        # fps=None: every frame once, in lockstep with the consumer (evaluation runs).
        numeric = None if isinstance(fps, str) else lockstep_fps(fps, "video")
        super().__init__(
            fps=numeric, lockstep=numeric is None and not self._native, backoff=backoff
        )
        self._frames: _PillowFrames | _OpenCVFrames | None = None
        self._primed: np.ndarray | None = None

    def _choose_backend(self) -> str:
        if self.requested_backend != "auto":
            return self.requested_backend
        if self.path.suffix.lower() in PILLOW_SUFFIXES:
            return "pillow"
        return "opencv"

    def _open(self) -> None:
        if not self.path.is_file():
            raise CameraError(f"video camera: {self.path} does not exist or is not a file")
        backend = self._choose_backend()
        frames: _PillowFrames | _OpenCVFrames
        frames = _PillowFrames(self.path) if backend == "pillow" else _OpenCVFrames(self.path)
        first = frames.read()
        if first is None:
            frames.close()
            raise CameraError(f"video camera: {self.path} has no decodable frames ({backend})")
        self._frames, self.backend = frames, backend
        self._primed = first
        if self._native and self.fps is None:
            self.fps = frames.native_fps or 30.0

    def _read(self) -> tuple[np.ndarray, str | None]:
        if self._primed is not None:
            first, self._primed = self._primed, None
            return first, None
        if self._frames is None:
            raise CameraError("video camera: not open")
        frame = self._frames.read()
        if frame is None:
            if not self.loop:
                raise EndOfStream
            self._frames.rewind()
            frame = self._frames.read()
            if frame is None:
                raise CameraError(
                    f"video camera: {self.path} stopped yielding frames after a rewind"
                )
        return frame, None

    def _close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        self._primed = None
