"""A live camera through OpenCV's VideoCapture: USB/V4L2 devices and GStreamer pipelines.

``device`` is a V4L2 index (``0``), a device path (``/dev/video0``), or a GStreamer
pipeline string ending in ``appsink`` — the way CSI cameras on a Jetson are read
(``nvarguscamerasrc``, see :func:`jetson_csi_pipeline`). Anything else (a URL, a file) is
passed to VideoCapture as is. Errors are checked up front, in the words a person setting
up a board needs: no such device, OpenCV without GStreamer, camera opens but yields nothing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backoff, CameraError, CameraSource
from .video import import_cv2

_DEV_PATH = re.compile(r"^/dev/video\d+$")


def jetson_csi_pipeline(
    sensor_id: int = 0,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    flip: int = 0,
    out_width: int | None = None,
    out_height: int | None = None,
) -> str:
    """A GStreamer pipeline for a Jetson CSI camera (nvarguscamerasrc → BGR appsink).

    ``drop=true max-buffers=1`` on the appsink keeps GStreamer from queueing frames the
    consumer will never want — the same latest-frame policy as the capture thread.
    """
    ow, oh = out_width or width, out_height or height
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, width={ow}, height={oh}, format=BGRx ! "
        "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1"
    )


def opencv_has_gstreamer(cv2: Any) -> bool:
    info = cv2.getBuildInformation()
    match = re.search(r"GStreamer:\s*(\w+)", info)
    return bool(match and match.group(1).upper() == "YES")


class OpenCVCamera(CameraSource):
    """A V4L2 / GStreamer / URL camera read with ``cv2.VideoCapture``."""

    name = "opencv"

    def __init__(
        self,
        *,
        device: int | str = 0,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if isinstance(device, bool) or not isinstance(device, (int, str)):
            raise CameraError(
                f"opencv camera: device must be an index, a path or a pipeline, got {device!r}"
            )
        if isinstance(device, str) and device.strip().isdigit():
            device = int(device.strip())
        if isinstance(device, int) and device < 0:
            raise CameraError(f"opencv camera: device index must be >= 0, got {device}")
        for key, value in (("width", width), ("height", height)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise CameraError(f"opencv camera: {key} must be a positive integer, got {value!r}")
        if fps is not None and not fps > 0:
            raise CameraError(f"opencv camera: fps must be > 0, got {fps}")
        # The camera paces itself: no software pacing, ``fps`` is requested from the driver.
        super().__init__(fps=None, lockstep=False, backoff=backoff)
        self._cv2 = import_cv2()  # fail at configuration time, not on first frame
        self.device = device
        self.kind = self._classify(device)
        if self.kind == "gstreamer" and not opencv_has_gstreamer(self._cv2):
            raise CameraError(
                "opencv camera: a GStreamer pipeline was given but this OpenCV build has no "
                "GStreamer support (on Jetson use the system python3-opencv from JetPack)"
            )
        self.width, self.height, self.requested_fps = width, height, fps
        self._cap: Any = None

    @staticmethod
    def _classify(device: int | str) -> str:
        if isinstance(device, int):
            return "v4l2"
        if _DEV_PATH.match(device):
            return "v4l2"
        if "!" in device:
            return "gstreamer"
        return "other"

    def describe(self) -> str:
        return f"{self.kind} device {self.device!r}"

    def _open(self) -> None:
        cv2 = self._cv2
        if self.kind == "v4l2":
            path = (
                Path(f"/dev/video{self.device}")
                if isinstance(self.device, int)
                else Path(self.device)
            )
            if sys.platform.startswith("linux") and not path.exists():
                raise CameraError(
                    f"opencv camera: no such V4L2 device {path} (is the camera plugged in?)"
                )
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(self.device, api)
        elif self.kind == "gstreamer":
            cap = cv2.VideoCapture(self.device, cv2.CAP_GSTREAMER)
        else:
            cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"opencv camera: cannot open {self.describe()}")
        if self.kind != "gstreamer":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # no driver-side queue of stale frames
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.requested_fps:
                cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise CameraError(f"opencv camera: {self.describe()} opened but delivered no frame")
        self._cap = cap

    def _read(self) -> tuple[np.ndarray, str | None]:
        if self._cap is None:
            raise CameraError("opencv camera: not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CameraError(f"opencv camera: read from {self.describe()} failed (unplugged?)")
        cv2 = self._cv2
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), None
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), None

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
