"""A folder of images as a camera: the demo's and the evaluation's source.

Sorted order makes runs reproducible; looping makes a small folder a stream. When the
images sit in class sub-folders (``root/cat/001.jpg``) the sub-folder name travels with
the frame as its label, so the demo can score accuracy end to end. A file that fails to
decode is skipped with a warning rather than stopping the stream; a folder that vanishes
(an unmounted USB stick) is a lost camera and is reconnected like one.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from wire.logjson import get_logger

from .base import Backoff, CameraError, CameraSource, EndOfStream, lockstep_fps

log = get_logger(__name__)

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
)


def load_rgb(path: Path, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one image file to uint8 H×W×3 RGB (palette, grey, alpha all normalised).

    ``min_size`` = (width, height): the consumer never needs more pixels than that, so a JPEG
    is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose result still covers it in both
    directions (Pillow's ``draft``). A 1024×683 photo for a 224×224 head decodes at 512×342:
    a quarter of the decoding work and of the frame's memory, and the DCT scaling is itself a
    proper area filter. Other formats decode at full size.
    """
    with Image.open(path) as im:
        if min_size is not None:
            im.draft(None, min_size)
        im.load()
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im)


class FolderCamera(CameraSource):
    """Images from a directory tree, sorted by relative path, optionally looping."""

    name = "folder"

    def __init__(
        self,
        *,
        path: str | Path,
        fps: float | None = None,
        loop: bool = True,
        labels: bool | str = "auto",
        recursive: bool = True,
        extensions: tuple[str, ...] | list[str] = IMAGE_EXTENSIONS,
        min_size: tuple[int, int] | list[int] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if labels not in (True, False, "auto"):
            raise CameraError(
                f"folder camera: labels must be true, false or 'auto', got {labels!r}"
            )
        if not isinstance(loop, bool):
            raise CameraError(f"folder camera: loop must be true or false, got {loop!r}")
        # fps=None: deliver every image exactly once per pass (lockstep, no drops) — what
        # an accuracy run wants. With fps set it behaves like a live camera.
        fps = lockstep_fps(fps, "folder")
        super().__init__(fps=fps, lockstep=fps is None, backoff=backoff)
        self.root = Path(path).expanduser()
        self.loop = loop
        self.labels = labels
        self.recursive = recursive
        self.extensions = tuple(
            e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions
        )
        self.files: list[Path] = []
        self.skipped_files: list[Path] = []
        self._pos = 0
        self._primed: tuple[np.ndarray, str | None] | None = None
        self.min_size: tuple[int, int] | None = None
        if min_size is not None:
            self.set_min_size(*min_size)

    def set_min_size(self, width: int, height: int) -> None:
        """Frames need only cover ``width`` × ``height`` (the head's input): JPEGs may decode
        smaller, see :func:`load_rgb`. The device daemon calls this before :meth:`start`."""
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)
        ):
            raise CameraError(
                f"folder camera: min_size must be two positive integers, got {(width, height)!r}"
            )
        self.min_size = (width, height)

    def _scan(self) -> list[Path]:
        if not self.root.exists():
            raise CameraError(f"folder camera: {self.root} does not exist")
        if not self.root.is_dir():
            raise CameraError(f"folder camera: {self.root} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise CameraError(f"folder camera: {self.root} is not readable (permission denied)")
        pattern = self.root.rglob("*") if self.recursive else self.root.iterdir()
        try:
            files = sorted(
                (p for p in pattern if p.is_file() and p.suffix.lower() in self.extensions),
                key=lambda p: p.relative_to(self.root).as_posix(),
            )
        except PermissionError as exc:
            raise CameraError(
                f"folder camera: cannot read {exc.filename}: permission denied"
            ) from exc
        if not files:
            raise CameraError(
                f"folder camera: no images in {self.root} (looked for {', '.join(self.extensions)})"
            )
        if self.labels is True:
            loose = [p for p in files if p.parent == self.root]
            if loose:
                raise CameraError(
                    f"folder camera: labels=true needs class sub-folders, but {loose[0].name} "
                    f"sits directly in {self.root}"
                )
        return files

    def label_of(self, path: Path) -> str | None:
        """The class name: the first directory under the root (None for loose files)."""
        if self.labels is False:
            return None
        parts = path.relative_to(self.root).parts
        return parts[0] if len(parts) > 1 else None

    def _open(self) -> None:
        files = self._scan()
        self.files = files
        if self._pos >= len(files):
            self._pos = 0
        # Decode one image now, so a folder of nothing but broken files fails at startup.
        try:
            self._primed = self._next_decodable()
        except EndOfStream:
            if self.frames_captured == 0:
                raise CameraError(
                    f"folder camera: none of the {len(files)} images in {self.root} could be decoded"
                ) from None
            self._primed = None  # a non-looping pass already finished: _read ends it

    def _next_decodable(self) -> tuple[np.ndarray, str | None]:
        for _ in range(len(self.files)):
            if self._pos >= len(self.files):
                if not self.loop:
                    raise EndOfStream
                self._pos = 0
            path = self.files[self._pos]
            self._pos += 1
            try:
                return load_rgb(path, self.min_size), self.label_of(path)
            except FileNotFoundError:
                raise  # the folder changed under us: a lost camera, rescan on reconnect
            except (
                UnidentifiedImageError,
                Image.DecompressionBombError,
                OSError,
                ValueError,
            ) as exc:
                if path not in self.skipped_files:
                    self.skipped_files.append(path)
                    message = f"folder camera: skipping undecodable {path}: {exc}"
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
                    log.warning("skip_file", source=self.name, path=str(path), error=str(exc))
        if not self.loop and self._pos >= len(self.files):
            raise EndOfStream
        raise CameraError(
            f"folder camera: none of the {len(self.files)} images in {self.root} could be decoded"
        )

    def _read(self) -> tuple[np.ndarray, str | None]:
        if self._primed is not None:
            primed, self._primed = self._primed, None
            return primed
        return self._next_decodable()

    def _close(self) -> None:
        self._primed = None
