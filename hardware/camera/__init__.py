"""Camera sources behind one interface, with latest-frame semantics.

``open_camera("folder", path="photos/")`` validates the source name and its parameters
(unknown keys are errors naming the key, as for every config in the project) and returns
a :class:`CameraSource`; ``start()`` (or ``with``) opens the device, so a missing camera
fails at startup with a clear message. Sources with optional dependencies (OpenCV,
picamera2) import them only when selected.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .base import (
    STATUS_FAILED,
    STATUS_IDLE,
    STATUS_OK,
    STATUS_RECONNECTING,
    STATUS_STOPPED,
    Backoff,
    CameraError,
    CameraSource,
    CameraTimeout,
    CapturedFrame,
    LatestFrameSlot,
)
from .folder import FolderCamera
from .synthetic import SyntheticCamera
from .video import VideoFileCamera

SOURCES = ("synthetic", "folder", "video", "opencv", "picamera2")

__all__ = [
    "SOURCES",
    "STATUS_FAILED",
    "STATUS_IDLE",
    "STATUS_OK",
    "STATUS_RECONNECTING",
    "STATUS_STOPPED",
    "Backoff",
    "CameraError",
    "CameraSource",
    "CameraTimeout",
    "CapturedFrame",
    "FolderCamera",
    "LatestFrameSlot",
    "SyntheticCamera",
    "VideoFileCamera",
    "open_camera",
]


def _source_class(source: str) -> type[CameraSource]:
    if source == "synthetic":
        return SyntheticCamera
    if source == "folder":
        return FolderCamera
    if source == "video":
        return VideoFileCamera
    if source == "opencv":
        from .opencv_camera import OpenCVCamera  # OpenCV itself is imported on construction

        return OpenCVCamera
    if source == "picamera2":
        from .picam import PiCamera2Camera  # picamera2 itself is imported on construction

        return PiCamera2Camera
    raise CameraError(f"unknown camera source {source!r}; choose one of: {', '.join(SOURCES)}")


def _backoff(value: Any, source: str) -> Backoff | None:
    if value is None or isinstance(value, Backoff):
        return value
    if not isinstance(value, Mapping):
        raise CameraError(f"camera source {source!r}: reconnect must be a table, got {value!r}")
    allowed = ("initial", "maximum", "factor", "max_attempts")
    for key in value:
        if key not in allowed:
            raise CameraError(
                f"camera source {source!r}: unknown reconnect key {key!r} (allowed: {', '.join(allowed)})"
            )
    return Backoff(**dict(value))


def open_camera(source: str, **params: Any) -> CameraSource:
    """Build a camera source from its name and parameters (not started yet).

    ``reconnect={"initial": 0.5, "maximum": 10, "factor": 2, "max_attempts": None}`` tunes
    the backoff for every source (the key mirrors a ``[camera.reconnect]`` TOML table).
    """
    if not isinstance(source, str):
        raise CameraError(f"camera source must be a string, got {source!r}")
    cls = _source_class(source)
    allowed = [
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "backoff"
    ]
    for key in params:
        if key not in allowed and key != "reconnect":
            raise CameraError(
                f"camera source {source!r}: unknown parameter {key!r} "
                f"(allowed: {', '.join([*allowed, 'reconnect'])})"
            )
    required = [
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    for key in required:
        if key not in params:
            raise CameraError(f"camera source {source!r}: missing required parameter {key!r}")
    kwargs = dict(params)
    backoff = _backoff(kwargs.pop("reconnect", None), source)
    try:
        return cls(**kwargs, backoff=backoff)
    except CameraError:
        raise
    except (TypeError, ValueError) as exc:
        raise CameraError(f"camera source {source!r}: bad parameters: {exc}") from exc
