"""Camera sources behind one interface, with latest-frame semantics.

``open_camera("folder", path="photos/")`` validates the source name and its parameters
(unknown keys are errors naming the key, as for every config in the project) and returns
a :class:`CameraSource`; ``start()`` (or ``with``) opens the device, so a missing camera
fails at startup with a clear message. Sources with optional dependencies (OpenCV,
picamera2) import them only when selected.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

from wire.registry import Registry

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

#: source name -> "module:Class", imported when selected (OpenCV, picamera2 are optional).
#: The one list of camera sources: the device config, the camera CLI and ``open_camera``
#: read it; a plug-in adds itself with :func:`register_source`.
SOURCE_CLASSES: Registry[str] = Registry("camera source")
for _name, _target in (
    ("synthetic", "hardware.camera.synthetic:SyntheticCamera"),
    ("folder", "hardware.camera.folder:FolderCamera"),
    ("video", "hardware.camera.video:VideoFileCamera"),
    ("opencv", "hardware.camera.opencv_camera:OpenCVCamera"),  # imports OpenCV when built
    ("picamera2", "hardware.camera.picam:PiCamera2Camera"),  # imports picamera2 when built
):
    SOURCE_CLASSES.register(_name, _target)

#: The source names, tuple-like and live (follows :data:`SOURCE_CLASSES`).
SOURCES: Sequence[str] = SOURCE_CLASSES.names

__all__ = [
    "SOURCES",
    "SOURCE_CLASSES",
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
    "register_source",
]


def register_source(name: str, target: str) -> None:
    """Make ``"module:Class"`` (a :class:`CameraSource`) selectable as camera ``name``."""
    if not isinstance(target, str) or ":" not in target:
        raise ValueError(f"camera source {name!r}: target must be 'module:Class', got {target!r}")
    SOURCE_CLASSES.register(name, target)


def _source_class(source: str) -> type[CameraSource]:
    target = SOURCE_CLASSES.get(source)
    if target is None:
        raise CameraError(f"unknown camera source {source!r}; choose one of: {', '.join(SOURCES)}")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, CameraSource)):
        raise CameraError(f"camera source {source!r}: {target} is not a CameraSource")
    return cls


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
    reconnect = kwargs.pop("reconnect", None)
    where = f"camera source {source!r}"
    backoff = None if reconnect is None else Backoff.from_mapping(reconnect, where)
    try:
        return cls(**kwargs, backoff=backoff)
    except CameraError:
        raise
    except (TypeError, ValueError) as exc:
        raise CameraError(f"camera source {source!r}: bad parameters: {exc}") from exc
