"""The Raspberry Pi camera through picamera2 (libcamera).

picamera2 ships with Raspberry Pi OS (``apt install python3-picamera2``), not from PyPI in
a usable form, so it is imported only when this source is selected, and its absence is a
configuration error with the install hint rather than an ImportError at daemon start.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from .base import Backoff, CameraError, CameraSource


def import_picamera2() -> Any:
    try:
        return importlib.import_module("picamera2")
    except ImportError as exc:
        raise CameraError(
            "picamera2 camera: the picamera2 module is not installed "
            "(on Raspberry Pi OS: sudo apt install python3-picamera2; in a venv, create it "
            "with --system-site-packages)"
        ) from exc


class PiCamera2Camera(CameraSource):
    """A libcamera camera via picamera2, delivering RGB frames of ``width``×``height``."""

    name = "picamera2"

    def __init__(
        self,
        *,
        camera_num: int = 0,
        width: int = 640,
        height: int = 480,
        fps: float | None = None,
        swap_rb: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        for key, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or value <= 0:
                raise CameraError(
                    f"picamera2 camera: {key} must be a positive integer, got {value!r}"
                )
        if not isinstance(camera_num, int) or camera_num < 0:
            raise CameraError(
                f"picamera2 camera: camera_num must be an integer >= 0, got {camera_num!r}"
            )
        if fps is not None and not fps > 0:
            raise CameraError(f"picamera2 camera: fps must be > 0, got {fps}")
        if not isinstance(swap_rb, bool):
            raise CameraError(f"picamera2 camera: swap_rb must be true or false, got {swap_rb!r}")
        super().__init__(fps=None, lockstep=False, backoff=backoff)
        self._module = import_picamera2()
        self.camera_num = camera_num
        self.width, self.height = width, height
        self.requested_fps = fps
        self.swap_rb = swap_rb
        self._cam: Any = None

    def _open(self) -> None:
        try:
            cam = self._module.Picamera2(self.camera_num)
        except (IndexError, RuntimeError) as exc:
            raise CameraError(f"picamera2 camera: no camera {self.camera_num}: {exc}") from exc
        controls = {"FrameRate": float(self.requested_fps)} if self.requested_fps else {}
        # libcamera names formats by their little-endian word layout: "BGR888" is stored as
        # R, G, B bytes, i.e. an RGB numpy array, which is what the pipeline wants. Should a
        # stack deliver red and blue swapped (check: hold up something red), set swap_rb.
        config = cam.create_video_configuration(
            main={"size": (self.width, self.height), "format": "BGR888"},
            buffer_count=2,
            controls=controls,
        )
        cam.configure(config)
        cam.start()
        self._cam = cam

    def _read(self) -> tuple[np.ndarray, str | None]:
        if self._cam is None:
            raise CameraError("picamera2 camera: not open")
        frame = self._cam.capture_array("main")[..., :3]
        if self.swap_rb:
            frame = frame[..., ::-1]
        return np.ascontiguousarray(frame), None

    def _close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None
