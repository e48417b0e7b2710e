"""Camera supervision: open, read the latest frame, and bring a failed camera back.

Why on top of the camera's own reconnects: a source retries a lost device by itself, but it
may give up (``max_attempts``), or fail to open at start (the USB camera is not plugged in
yet). The daemon must not exit for that under systemd — it reports the failure (log, LED,
STATUS=) and re-creates the source with exponential backoff, while the main loop keeps
running (and keeps the watchdog honest: no frames means no progress).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from device.config import CameraSection
from hardware.backoff import RetryTimer
from hardware.camera import (
    STATUS_STOPPED,
    CameraError,
    CameraSource,
    CameraTimeout,
    CapturedFrame,
    open_camera,
)
from wire.logjson import get_logger


class EndOfInput(Exception):
    """A finite source (folder/video with loop = false) delivered its last frame."""


@dataclass
class CameraHealth:
    ok: bool = False
    failures: int = 0
    last_error: str | None = None


class CameraSupervisor:
    """Hands out the newest frame; hides (but reports) camera failures and restarts."""

    def __init__(
        self,
        cfg: CameraSection,
        *,
        min_size: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        # Injectable so the retry schedule and the silence report are tested by stepping
        # time; the camera's own frame wait still runs on the real clock.
        self._clock = clock
        # (width, height) the heads need; a source that can deliver smaller frames cheaply
        # (the folder camera decodes JPEGs at 1/2..1/8 scale) is told before it starts.
        self.min_size = min_size
        self.log = get_logger(__name__)
        self.health = CameraHealth()
        self._cam: CameraSource | None = None
        # Never gives up: max_attempts is the source's own retry limit, not the supervisor's.
        self._retry = RetryTimer(cfg.reconnect, clock)
        self._last_frame = self._clock()
        self._silent_logged = False
        self._lockstep: bool | None = None

    def validate(self) -> None:
        """Build (not open) the source once, so bad params fail at startup, naming the key;
        what the built source says of itself (lockstep) is kept, not built again."""
        self._lockstep = self._open().lockstep

    def _open(self) -> CameraSource:
        return open_camera(self.cfg.source, **self.cfg.params, reconnect=self.cfg.reconnect)

    @property
    def source(self) -> CameraSource | None:
        return self._cam

    @property
    def lockstep(self) -> bool:
        """Whether the source waits for the consumer (see :attr:`CameraSource.lockstep`).

        Known before the camera starts (the source is built, not opened), so the daemon
        can decide not to drain it while it has no session yet."""
        if self._cam is not None:
            return self._cam.lockstep
        if self._lockstep is None:
            self.validate()
        assert self._lockstep is not None
        return self._lockstep

    @property
    def frames_dropped(self) -> int:
        return self._cam.frames_dropped if self._cam is not None else 0

    @property
    def status(self) -> str:
        return self._cam.status if self._cam is not None else "failed"

    def _ensure_started(self, now: float) -> bool:
        if self._cam is not None:
            return True
        if not self._retry.due(now):
            return False
        try:
            cam = self._open()
            hint = getattr(cam, "set_min_size", None)
            if self.min_size is not None and hint is not None:
                hint(*self.min_size)
            cam.start()
        except CameraError as exc:
            self._failed(str(exc), now)
            return False
        self._cam = cam
        self._last_frame = self._clock()
        self.health.ok = True
        self._retry.succeeded()
        self.log.info("camera_started", source=self.cfg.source)
        return True

    def _failed(self, error: str, now: float) -> None:
        self.health.ok = False
        self.health.failures += 1
        self.health.last_error = error
        self.log.warning(
            "camera_failed",
            source=self.cfg.source,
            error=error,
            retry_in_s=round(self._retry.next_delay, 3),
            failures=self.health.failures,
        )
        self._retry.failed(now)

    def latest(self, timeout: float) -> CapturedFrame | None:
        """The newest frame, or None (timeout, camera down; waits ``timeout`` at most)."""
        now = self._clock()
        if not self._ensure_started(now):
            time.sleep(min(timeout, self._retry.remaining(now)))
            return None
        assert self._cam is not None
        try:
            frame = self._cam.latest(timeout)
        except CameraTimeout:
            silent = self._clock() - self._last_frame
            if silent > self.cfg.frame_timeout_s and not self._silent_logged:
                self._silent_logged = True  # once per silence, not once per poll
                self.log.warning(
                    "camera_no_frames",
                    source=self.cfg.source,
                    seconds=round(silent, 3),
                    status=self._cam.status,
                )
            return None
        except CameraError as exc:
            if self._cam.status == STATUS_STOPPED:
                raise EndOfInput(str(exc)) from None
            self._cam.stop(timeout=1.0)
            self._cam = None
            self._failed(str(exc), self._clock())
            return None
        self.health.ok = True
        self._last_frame = self._clock()
        self._silent_logged = False
        return frame

    def stop(self) -> None:
        if self._cam is not None:
            self._cam.stop(timeout=2.0)
            self._cam = None
