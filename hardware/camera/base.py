"""The capture-thread machinery shared by every camera source.

A camera produces frames at its own pace; the device daemon consumes them at the pace of
the head model. Queuing in between would only add latency (a classifier wants the *newest*
scene), so a source keeps exactly one frame: the newest. Frames overwritten before anyone
took them are counted as dropped. A source whose device goes away retries with exponential
backoff in its own thread and reports the state, so the consumer loop never sees an
exception from the camera hardware, only a status and, at worst, a timeout.

Subclasses implement three small hooks (``_open``, ``_read``, ``_close``); everything
about threads, pacing, reconnects and counters lives here once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardware.backoff import Backoff as _Backoff
from wire.logjson import get_logger

log = get_logger(__name__)

STATUS_IDLE = "idle"
STATUS_OK = "ok"
STATUS_RECONNECTING = "reconnecting"
STATUS_FAILED = "failed"
STATUS_STOPPED = "stopped"


class CameraError(RuntimeError):
    """A camera could not be configured, opened or read; the message names the problem."""


class CameraTimeout(CameraError, TimeoutError):
    """No new frame arrived within the timeout given to :meth:`CameraSource.latest`."""


class EndOfStream(Exception):
    """Raised by ``_read`` when a finite, non-looping source has delivered its last frame."""


@dataclass(frozen=True, eq=False)
class CapturedFrame:
    """One frame as the consumer sees it.

    ``timestamp`` is ``time.monotonic()`` taken right after the frame was read, so the
    daemon can measure capture-to-reply latency on one clock. ``label`` is the class name
    for labelled sources (a folder with class sub-folders), so the demo can score accuracy.
    """

    image: np.ndarray  # uint8, H×W×3, RGB
    timestamp: float
    frame_number: int
    label: str | None = None


class Backoff(_Backoff):
    """The shared reconnect policy (:mod:`hardware.backoff`), raising :class:`CameraError`.

    Same fields and delays; only the error type differs, so a caller of ``open_camera``
    catches one exception type for every bad camera setting.
    """

    error = CameraError


class LatestFrameSlot:
    """A one-element mailbox: the producer overwrites, the consumer waits for something newer.

    Kept separate from :class:`CameraSource` because it is the whole of the latest-frame
    semantics and is benchmarked on its own (``benchmarks/capture.py``).

    With ``lockstep=True`` the producer instead waits until the previous frame was taken
    (no drops): that is for evaluation runs over a folder or video, where every image
    should be scored once, not for live cameras.
    """

    def __init__(
        self, *, lockstep: bool = False, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cond = threading.Condition()
        # Injectable so a timeout is tested by stepping time, not by waiting it out.
        self._clock = clock
        self._frame: CapturedFrame | None = None
        self._taken = True  # nothing pending
        self._last_returned = -1
        self._closed = False
        self.lockstep = lockstep
        self.dropped = 0
        self.published = 0

    def put(self, frame: CapturedFrame, stop: threading.Event | None = None) -> bool:
        """Publish ``frame``; returns False if the slot was closed (or ``stop`` set) meanwhile."""
        with self._cond:
            if self.lockstep:
                while not self._taken and not self._closed and not (stop and stop.is_set()):
                    self._cond.wait(0.05)
                if self._closed or (stop and stop.is_set()):
                    return False
            if not self._taken:
                self.dropped += 1
            self._frame = frame
            self._taken = False
            self.published += 1
            self._cond.notify_all()
            return True

    def get(
        self, timeout: float | None = None, *, abort: threading.Event | None = None
    ) -> CapturedFrame:
        """The newest frame with a number greater than the last one returned.

        Raises :class:`CameraTimeout` after ``timeout`` seconds (``None``: wait forever, or
        until the slot is closed or ``abort`` is set, which raise :class:`CameraError`).
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                frame = self._frame
                if frame is not None and frame.frame_number > self._last_returned:
                    self._last_returned = frame.frame_number
                    self._taken = True
                    self._cond.notify_all()
                    return frame
                if self._closed:
                    raise CameraError("camera stopped")
                if abort is not None and abort.is_set():
                    raise CameraError("camera failed")
                if deadline is None:
                    self._cond.wait(0.1)
                else:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise CameraTimeout(f"no new frame within {timeout:.3f} s")
                    self._cond.wait(min(remaining, 0.1))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        """Accept frames again after :meth:`close`, discarding one left from before.

        A frame captured before a stop is stale by definition; handing it out after a
        restart would break the "newest frame only" promise.
        """
        with self._cond:
            self._closed = False
            if not self._taken and self._frame is not None:
                self.dropped += 1
                self._last_returned = max(self._last_returned, self._frame.frame_number)
            self._taken = True


def lockstep_fps(fps: Any, source: str) -> float | None:
    """Normalise a file-like source's ``fps``: ``0`` or ``None`` mean "unpaced, lockstep".

    TOML has no null, so ``fps = 0`` is how a config asks for every frame exactly once.
    """
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise CameraError(f"{source} camera: fps must be a number, got {fps!r}")
    if fps < 0:
        raise CameraError(f"{source} camera: fps must be >= 0 (0: every frame, unpaced), got {fps}")
    return None if fps == 0 else float(fps)


class CameraSource:
    """Base class: a capture thread feeding a :class:`LatestFrameSlot`.

    Subclasses implement:

    * ``_open()`` — acquire the device/file; raise :class:`CameraError` with a clear
      message if it cannot be used. Called in the caller's thread by :meth:`start` (so a
      bad device fails at startup) and in the capture thread on reconnect.
    * ``_read() -> (image, label)`` — block for the next frame (uint8 H×W×3 RGB). Raise
      any exception for a lost device (→ reconnect), :class:`EndOfStream` when a finite
      source is done.
    * ``_close()`` — release; must be safe to call twice.

    ``fps`` paces ``_read`` for sources that would otherwise run flat out (folder, video,
    synthetic); live cameras pace themselves and leave it ``None``.
    """

    name = "camera"

    def __init__(
        self,
        *,
        fps: float | None = None,
        lockstep: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        if fps is not None and not fps > 0:
            raise CameraError(f"{self.name}: fps must be > 0, got {fps}")
        self.fps = fps
        self.backoff = backoff or Backoff()
        self._slot = LatestFrameSlot(lockstep=lockstep)
        self._stop = threading.Event()
        self._failed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._frame_number = 0
        self.frames_captured = 0
        self.reconnects = 0
        self.status = STATUS_IDLE
        self.last_error: str | None = None
        self._last_capture: float | None = None
        self._started_at: float | None = None
        self._ended = False

    # -- hooks -------------------------------------------------------------------------
    def _open(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read(self) -> tuple[np.ndarray, str | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- public API --------------------------------------------------------------------
    @property
    def frames_dropped(self) -> int:
        """Frames captured but overwritten before the consumer took them."""
        return self._slot.dropped

    @property
    def seconds_since_last_frame(self) -> float | None:
        """How long the capture thread has gone without a frame (None before start).

        A reconnect is visible in :attr:`status`, but a driver that blocks inside a read
        is not; a supervisor can compare this against its own patience and restart.
        """
        since = self._last_capture if self._last_capture is not None else self._started_at
        return None if since is None else time.monotonic() - since

    @property
    def lockstep(self) -> bool:
        """True if the producer waits until its frame was taken (fps = 0 on a file-like
        source): a consumer that takes a frame and discards it loses that image for good,
        whereas a live camera's frame would have been overwritten anyway."""
        return self._slot.lockstep

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> CameraSource:
        """Open the device now (errors surface here, at startup) and start capturing."""
        with self._lock:
            if self.running:
                return self
            self._stop.clear()
            self._failed.clear()
            self._ended = False
            self._slot.reopen()
            try:
                self._open()
            except CameraError as exc:
                self.status = STATUS_FAILED
                self.last_error = str(exc)
                self._safe_close()
                raise
            except Exception as exc:
                self.status = STATUS_FAILED
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._safe_close()
                raise CameraError(f"{self.name}: cannot open: {self.last_error}") from exc
            self.status = STATUS_OK
            self.last_error = None
            self._started_at = time.monotonic()
            self._thread = threading.Thread(
                target=self._run, name=f"camera-{self.name}", daemon=True
            )
            self._thread.start()
            log.info("started", source=self.name)
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the capture thread and release the device; safe to call more than once."""
        self._stop.set()
        self._slot.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        self._safe_close()
        if self.status != STATUS_FAILED:
            self.status = STATUS_STOPPED

    def latest(self, timeout: float | None = None) -> CapturedFrame:
        """The newest frame, newer than the one returned by the previous call.

        Raises :class:`CameraTimeout` if none arrives within ``timeout`` seconds (the
        consumer decides what to do: skip a cycle, show "no camera"), or
        :class:`CameraError` if the source stopped or gave up reconnecting.
        """
        if self._thread is None and self.status == STATUS_IDLE:
            raise CameraError(f"{self.name}: camera not started (call start() first)")
        if self._thread is None and self.status == STATUS_STOPPED:
            raise CameraError(f"{self.name}: camera stopped")
        try:
            return self._slot.get(timeout, abort=self._failed)
        except CameraTimeout:
            raise
        except CameraError as exc:
            if self._ended:
                raise CameraError(
                    f"{self.name}: end of stream (the source does not loop)"
                ) from None
            raise CameraError(f"{self.name}: {self.status}: {self.last_error or exc}") from None

    def __enter__(self) -> CameraSource:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- capture thread ----------------------------------------------------------------
    def _safe_close(self) -> None:
        try:
            self._close()
        except Exception as exc:  # closing a dead device must not mask the real error
            log.warning("close_failed", source=self.name, error=f"{type(exc).__name__}: {exc}")

    def _publish(self, image: np.ndarray, label: str | None) -> bool:
        now = time.monotonic()
        frame = CapturedFrame(
            image=image, timestamp=now, frame_number=self._frame_number, label=label
        )
        self._last_capture = now
        self._frame_number += 1
        self.frames_captured += 1
        return self._slot.put(frame, stop=self._stop)

    def _run(self) -> None:
        period = None if self.fps is None else 1.0 / self.fps
        next_due = time.monotonic()
        while not self._stop.is_set():
            if period is not None:
                wait = next_due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                # Do not try to catch up after a stall: a camera does not either.
                next_due = max(next_due + period, time.monotonic())
            try:
                image, label = self._read()
            except EndOfStream:
                log.info("end_of_stream", source=self.name, frames=self.frames_captured)
                self._ended = True
                self.status = STATUS_STOPPED
                self._slot.close()
                return
            except Exception as exc:
                if self._stop.is_set():
                    break
                if not self._reconnect(exc):
                    return
                next_due = time.monotonic()
                continue
            if not self._publish(image, label):
                break

    def _reconnect(self, cause: BaseException) -> bool:
        """Close, then reopen with exponential backoff. False if we gave up or were stopped."""
        self.status = STATUS_RECONNECTING
        self.last_error = f"{type(cause).__name__}: {cause}"
        log.warning("lost", source=self.name, error=self.last_error)
        self._safe_close()
        for attempt, delay in enumerate(self.backoff.delays(), 1):
            if self._stop.wait(delay):
                return False
            try:
                self._open()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "reconnect_failed",
                    source=self.name,
                    attempt=attempt,
                    retry_in=self.backoff.delay(attempt),
                    error=self.last_error,
                )
                self._safe_close()
                continue
            self.reconnects += 1
            self.status = STATUS_OK
            log.info("reconnected", source=self.name, attempt=attempt)
            return True
        self.status = STATUS_FAILED
        log.error("failed", source=self.name, error=self.last_error)
        self._failed.set()
        self._slot.close()
        return False
