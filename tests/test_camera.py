"""Camera sources: latest-frame semantics, every source that can run here, clear errors.

Sources run for real (threads, Pillow/OpenCV decoding, files on disk); a lost camera is
simulated by taking the folder or file away under a running source. Tests wait for what
they need to have happened (a newer frame captured, a reconnect attempt failed) with
``wait_until``, not for a guessed time, so a loaded machine makes them slower, not flaky.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image
from support.waiting import wait_until

from hardware.camera import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_RECONNECTING,
    STATUS_STOPPED,
    Backoff,
    CameraError,
    CameraTimeout,
    CapturedFrame,
    LatestFrameSlot,
    SyntheticCamera,
    open_camera,
)

ROOT = Path(__file__).resolve().parents[1]
FAST_RECONNECT = {"initial": 0.02, "maximum": 0.1, "factor": 2.0}


def _frame(n: int) -> CapturedFrame:
    return CapturedFrame(np.zeros((2, 2, 3), np.uint8), time.monotonic(), n, None)


def _reconnect_failures(caplog: pytest.LogCaptureFixture) -> int:
    """How many times a source has tried to reopen its device and failed (its log events)."""
    return sum(getattr(r, "event", None) == "reconnect_failed" for r in list(caplog.records))


def _solid(color: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> Image.Image:
    return Image.new("RGB", size, color)


# -- the latest-frame slot ----------------------------------------------------------------


def test_slot_keeps_only_the_newest_frame_and_counts_drops() -> None:
    slot = LatestFrameSlot()
    for n in range(5):
        slot.put(_frame(n))
    assert slot.get(0.1).frame_number == 4
    assert slot.dropped == 4
    with pytest.raises(CameraTimeout):
        slot.get(0.05)  # frame 4 was already returned: never hand out a stale frame twice


def test_slot_get_waits_for_a_newer_frame() -> None:
    slot = LatestFrameSlot()
    slot.put(_frame(0))
    assert slot.get(0.1).frame_number == 0
    timer = threading.Timer(0.1, slot.put, args=(_frame(1),))
    timer.start()
    t0 = time.monotonic()
    assert slot.get(2.0).frame_number == 1
    assert time.monotonic() - t0 >= 0.05
    timer.join()
    assert slot.dropped == 0


def test_lockstep_slot_delivers_every_frame() -> None:
    slot = LatestFrameSlot(lockstep=True)
    producer = threading.Thread(target=lambda: [slot.put(_frame(n)) for n in range(50)])
    producer.start()
    got = [slot.get(2.0).frame_number for _ in range(50)]
    producer.join(2.0)
    assert got == list(range(50))
    assert slot.dropped == 0


def test_closed_slot_raises_camera_error() -> None:
    slot = LatestFrameSlot()
    slot.close()
    with pytest.raises(CameraError, match="stopped"):
        slot.get(1.0)


def test_backoff_grows_exponentially_to_the_cap() -> None:
    delays = list(Backoff(initial=0.1, maximum=1.0, factor=2.0, max_attempts=6).delays())
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": 2.0, "maximum": 1.0}, {"factor": 0.5}, {"max_attempts": -1}],
)
def test_bad_backoff_is_rejected(kwargs: dict) -> None:
    with pytest.raises(CameraError, match=r"backoff|max_attempts"):
        Backoff(**kwargs)


# -- synthetic ----------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_moves() -> None:
    a = SyntheticCamera(width=96, height=64, seed=3)
    b = SyntheticCamera(width=96, height=64, seed=3)
    c = SyntheticCamera(width=96, height=64, seed=4)
    assert a.render(7).shape == (64, 96, 3) and a.render(7).dtype == np.uint8
    assert np.array_equal(a.render(7), b.render(7))
    assert not np.array_equal(a.render(7), c.render(7))
    assert not np.array_equal(a.render(7), a.render(8))  # moving, so stale frames are visible


def test_synthetic_camera_delivers_the_frame_it_numbers() -> None:
    with open_camera("synthetic", width=80, height=60, fps=None, seed=1) as cam:
        frames = [cam.latest(2.0) for _ in range(5)]
        reference = SyntheticCamera(width=80, height=60, seed=1)
        for f in frames:
            assert np.array_equal(f.image, reference.render(f.frame_number))
            assert f.label is None
        assert [f.frame_number for f in frames] == [0, 1, 2, 3, 4]
        assert cam.frames_dropped == 0  # fps=None: lockstep
        ts = [f.timestamp for f in frames]
        assert ts == sorted(ts) and ts[-1] <= time.monotonic()


def test_fps_zero_means_every_frame_unpaced() -> None:
    """TOML has no null: ``fps = 0`` is the config spelling of lockstep."""
    with open_camera("synthetic", width=32, height=32, fps=0) as cam:
        assert cam.fps is None
        numbers = []
        for _ in range(20):
            numbers.append(cam.latest(2.0).frame_number)
            # The capture thread runs ahead until it holds a frame nobody took: the next
            # one waits in the slot, the one after is blocked, none is overwritten.
            wait_until(lambda n=numbers[-1]: cam.frames_captured >= n + 3, 5.0)
        assert numbers == list(range(20)) and cam.frames_dropped == 0
        assert cam.frames_captured == 22


def test_slow_consumer_sees_only_fresh_frames_and_drops_are_counted() -> None:
    with open_camera("synthetic", width=64, height=48, fps=200.0) as cam:
        seen = []
        for _ in range(6):
            frame = cam.latest(2.0)
            seen.append(frame)
            # The frame handed out is the newest one: captured just now, not queued earlier.
            assert time.monotonic() - frame.timestamp < 0.2
            # A slow consumer: two newer frames are captured before it asks again.
            wait_until(lambda n=frame.frame_number: cam.frames_captured >= n + 3, 5.0)
        numbers = [f.frame_number for f in seen]
        assert numbers == sorted(set(numbers))
        assert cam.frames_dropped > 0
        pending = cam.frames_captured - cam.frames_dropped - len(seen)
        assert pending in (0, 1)
        assert cam.status == STATUS_OK
    assert cam.status == STATUS_STOPPED


def test_fps_paces_the_capture_thread() -> None:
    started = time.monotonic()
    with open_camera("synthetic", width=32, height=32, fps=40.0) as cam:
        wait_until(lambda: cam.frames_captured >= 10, 10.0)
        elapsed = time.monotonic() - started
    # 10 frames at 40 fps are 9 periods apart: at least 0.225 s; unpaced, a few ms.
    assert elapsed >= 9 / 40


def test_latest_before_start_and_after_stop_raises() -> None:
    cam = open_camera("synthetic", width=32, height=32)
    with pytest.raises(CameraError, match="not started"):
        cam.latest(0.1)
    cam.start()
    cam.latest(2.0)
    cam.stop()
    with pytest.raises(CameraError, match="camera stopped"):
        cam.latest(0.1)
    cam.stop()  # idempotent


def test_camera_can_be_restarted_and_numbers_keep_increasing() -> None:
    cam = open_camera("synthetic", width=32, height=32, fps=100.0)
    assert cam.seconds_since_last_frame is None
    with cam:
        first = cam.latest(2.0).frame_number
        wait_until(lambda: cam.frames_captured >= first + 2, 5.0)  # a newer one is pending
        assert cam.seconds_since_last_frame is not None
        assert cam.seconds_since_last_frame < 1.0
    stopped_at = time.monotonic()
    with cam:
        frame = cam.latest(2.0)
        assert frame.frame_number > first
        # Not the frame left pending at stop(): that one is stale, it is discarded.
        assert frame.timestamp > stopped_at


def test_seconds_since_last_frame_grows_when_frames_stop(tmp_path: Path) -> None:
    _solid((1, 1, 1)).save(tmp_path / "a.png")
    cam = open_camera("folder", path=tmp_path, fps=50.0, loop=False)
    with cam:
        cam.latest(2.0)
        # One image, no loop: the source goes quiet and the gap keeps growing.
        wait_until(lambda: cam.seconds_since_last_frame >= 0.25, 10.0)
        assert cam.frames_captured == 1


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"width": -3}, "width"),
        ({"height": 2.5}, "height"),
        ({"fps": -1}, "fps"),
        ({"fps": "30"}, "fps"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_synthetic_bad_params(params: dict, match: str) -> None:
    with pytest.raises(CameraError, match=match):
        open_camera("synthetic", **params)


# -- registry -----------------------------------------------------------------------------


def test_unknown_source_is_named() -> None:
    with pytest.raises(CameraError, match=r"unknown camera source 'webcam'.*synthetic"):
        open_camera("webcam")


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(CameraError, match=r"unknown parameter 'fsp'"):
        open_camera("synthetic", fsp=10)


def test_missing_required_parameter_is_named() -> None:
    with pytest.raises(CameraError, match=r"missing required parameter 'path'"):
        open_camera("folder")


def test_unknown_reconnect_key_is_named() -> None:
    with pytest.raises(CameraError, match=r"unknown reconnect key 'delay'"):
        open_camera("synthetic", reconnect={"delay": 1})


def test_optional_backends_are_imported_only_when_selected() -> None:
    code = (
        "import sys\n"
        "from hardware.camera import open_camera\n"
        "with open_camera('synthetic', width=16, height=16) as cam:\n"
        "    cam.latest(2.0)\n"
        "print(sorted(m for m in ('cv2', 'picamera2') if sys.modules.get(m) is not None))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# -- folder -------------------------------------------------------------------------------

COLORS = {
    "cat/b.png": (200, 10, 10),
    "cat/a.png": (10, 200, 10),
    "dog/c.png": (10, 10, 200),
}


def _make_labelled(root: Path) -> None:
    for rel, color in COLORS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _solid(color).save(root / rel)


def _color(frame: CapturedFrame) -> tuple[int, ...]:
    return tuple(int(v) for v in frame.image[0, 0])


def test_folder_sorted_labelled_and_looping(tmp_path: Path) -> None:
    _make_labelled(tmp_path)
    with open_camera("folder", path=tmp_path) as cam:
        frames = [cam.latest(2.0) for _ in range(5)]
    order = ["cat/a.png", "cat/b.png", "dog/c.png", "cat/a.png", "cat/b.png"]
    assert [_color(f) for f in frames] == [COLORS[r] for r in order]
    assert [f.label for f in frames] == ["cat", "cat", "dog", "cat", "cat"]
    assert all(f.image.dtype == np.uint8 and f.image.shape == (24, 32, 3) for f in frames)
    assert cam.frames_dropped == 0


def test_folder_converts_grey_and_palette_images_to_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 6), 77).save(tmp_path / "a.png")
    _solid((1, 2, 3)).convert("P").save(tmp_path / "b.gif")
    with open_camera("folder", path=tmp_path, labels=False) as cam:
        a, b = cam.latest(2.0), cam.latest(2.0)
    assert a.image.shape == (6, 8, 3) and _color(a) == (77, 77, 77)
    assert b.image.shape == (24, 32, 3)
    assert a.label is None


def test_folder_loose_files_have_no_label_and_labels_true_requires_subfolders(
    tmp_path: Path,
) -> None:
    _solid((5, 5, 5)).save(tmp_path / "x.png")
    with open_camera("folder", path=tmp_path) as cam:
        assert cam.latest(2.0).label is None
    with pytest.raises(CameraError, match="sub-folders"):
        open_camera("folder", path=tmp_path, labels=True).start()


def test_folder_skips_undecodable_files_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "0_broken.jpg").write_bytes(b"not a jpeg at all")
    _solid((9, 99, 199)).save(tmp_path / "1_good.png")
    cam = open_camera("folder", path=tmp_path)
    with pytest.warns(RuntimeWarning, match=r"skipping undecodable .*0_broken\.jpg"):
        cam.start()
    try:
        assert _color(cam.latest(2.0)) == (9, 99, 199)
        assert _color(cam.latest(2.0)) == (9, 99, 199)  # loops past the broken file again
        assert [p.name for p in cam.skipped_files] == ["0_broken.jpg"]  # warned once
        assert cam.status == STATUS_OK
    finally:
        cam.stop()


def test_folder_skips_decompression_bombs(tmp_path: Path, monkeypatch) -> None:
    _solid((1, 2, 3), (64, 64)).save(tmp_path / "0_huge.png")  # "huge" under the limit below
    _solid((4, 5, 6), (4, 4)).save(tmp_path / "1_small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64×64 > 2×100: a bomb
    cam = open_camera("folder", path=tmp_path)
    with pytest.warns(RuntimeWarning, match="0_huge.png"), cam:
        assert _color(cam.latest(2.0)) == (4, 5, 6)
        assert cam.reconnects == 0


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda p: None, "no images in"),
        (lambda p: (p / "notes.txt").write_text("hi"), "no images in"),
        (lambda p: (p / "a.jpg").write_bytes(b"garbage"), "none of the 1 images"),
    ],
    ids=["empty", "no-image-files", "all-undecodable"],
)
def test_folder_unusable_fails_at_startup(tmp_path: Path, setup, match: str) -> None:
    setup(tmp_path)
    cam = open_camera("folder", path=tmp_path)
    warns = pytest.warns(RuntimeWarning) if "none" in match else contextlib.nullcontext()
    with warns, pytest.raises(CameraError, match=match):
        cam.start()
    assert cam.status == STATUS_FAILED


def test_folder_missing_or_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="does not exist"):
        open_camera("folder", path=tmp_path / "nope").start()
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(CameraError, match="not a directory"):
        open_camera("folder", path=tmp_path / "file.png").start()


def test_folder_without_loop_ends_cleanly(tmp_path: Path) -> None:
    _make_labelled(tmp_path)
    with open_camera("folder", path=tmp_path, loop=False) as cam:
        got = [cam.latest(2.0).label for _ in range(3)]
        with pytest.raises(CameraError, match="end of stream"):
            cam.latest(2.0)
        assert cam.status == STATUS_STOPPED
    assert got == ["cat", "cat", "dog"]


def test_folder_lost_then_back_reconnects(tmp_path: Path) -> None:
    root = tmp_path / "cam"
    _make_labelled(root)
    cam = open_camera("folder", path=root, fps=100.0, reconnect=FAST_RECONNECT)
    with cam:
        cam.latest(2.0)
        root.rename(tmp_path / "away")  # the USB stick is pulled
        wait_until(lambda: cam.status == STATUS_RECONNECTING, 5.0)
        error = cam.last_error or ""
        assert "No such file" in error or "does not exist" in error
        with contextlib.suppress(CameraTimeout):
            cam.latest(0.05)  # a frame read just before the loss may still be pending
        with pytest.raises(CameraTimeout):  # the consumer gets a timeout, not a crash
            cam.latest(0.2)
        (tmp_path / "away").rename(root)  # ... and plugged back in
        wait_until(lambda: cam.status == STATUS_OK, 5.0)
        before = cam.frames_captured
        frame = cam.latest(2.0)
        assert frame.frame_number >= before - 1
        assert cam.reconnects == 1


def test_folder_gives_up_after_max_attempts(tmp_path: Path) -> None:
    root = tmp_path / "cam"
    _make_labelled(root)
    cam = open_camera(
        "folder", path=root, fps=100.0, reconnect={**FAST_RECONNECT, "max_attempts": 2}
    )
    with cam:
        cam.latest(2.0)
        for p in sorted(root.rglob("*.png")):
            p.unlink()
        wait_until(lambda: cam.status == STATUS_FAILED, 5.0)
        with pytest.raises(CameraError, match=r"failed.*no images"):
            cam.latest(1.0)


# -- video --------------------------------------------------------------------------------

VIDEO_COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def _write_gif(path: Path, duration_ms: int = 50) -> None:
    frames = [_solid(c, (40, 30)) for c in VIDEO_COLORS]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)


def _write_avi(path: Path, fps: float = 25.0) -> None:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for rgb in VIDEO_COLORS:
        bgr = np.zeros((48, 64, 3), np.uint8)
        bgr[:] = rgb[::-1]
        writer.write(bgr)
    writer.release()


def _close_to(frame: CapturedFrame, rgb: tuple[int, int, int], tol: int = 30) -> bool:
    mean = frame.image.reshape(-1, 3).mean(axis=0)
    return bool(np.all(np.abs(mean - np.array(rgb)) <= tol))


def test_gif_via_pillow_in_order_and_looping(tmp_path: Path) -> None:
    path = tmp_path / "clip.gif"
    _write_gif(path)
    with open_camera("video", path=path) as cam:
        frames = [cam.latest(2.0) for _ in range(7)]
        assert cam.backend == "pillow"
    expected = [*VIDEO_COLORS, *VIDEO_COLORS[:2]]
    assert [_color(f) for f in frames] == expected
    assert frames[0].image.shape == (30, 40, 3)


def test_gif_native_fps_comes_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.gif"
    _write_gif(path, duration_ms=50)
    with open_camera("video", path=path, fps="native") as cam:
        assert cam.fps == pytest.approx(20.0)
        cam.latest(2.0)


def test_avi_via_opencv_is_rgb_and_ordered(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    _write_avi(path)
    with open_camera("video", path=path) as cam:
        frames = [cam.latest(2.0) for _ in range(6)]
        assert cam.backend == "opencv"
    for frame, rgb in zip(frames, [*VIDEO_COLORS, VIDEO_COLORS[0]], strict=True):
        assert frame.image.shape == (48, 64, 3)
        assert _close_to(frame, rgb), (frame.image.reshape(-1, 3).mean(axis=0), rgb)


def test_video_without_loop_ends(tmp_path: Path) -> None:
    path = tmp_path / "clip.gif"
    _write_gif(path)
    with open_camera("video", path=path, loop=False) as cam:
        for _ in VIDEO_COLORS:
            cam.latest(2.0)
        with pytest.raises(CameraError):
            cam.latest(2.0)


@pytest.mark.parametrize(
    ("name", "content", "params", "match"),
    [
        ("missing.mp4", None, {}, "does not exist"),
        ("junk.avi", b"\x00" * 1000, {}, "cannot open"),
        ("junk.gif", b"GIF89a-not-really", {}, "Pillow cannot read"),
        ("clip.avi", "avi", {"backend": "pillow"}, "Pillow cannot read"),
    ],
)
def test_video_errors_at_startup(
    tmp_path: Path, name: str, content, params: dict, match: str
) -> None:
    path = tmp_path / name
    if name.endswith(".avi"):
        pytest.importorskip("cv2")
    if content == "avi":
        _write_avi(path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CameraError, match=match):
        open_camera("video", path=path, **params).start()


def test_video_bad_params() -> None:
    with pytest.raises(CameraError, match="backend"):
        open_camera("video", path="x.mp4", backend="ffmpeg")
    with pytest.raises(CameraError, match="fps"):
        open_camera("video", path="x.mp4", fps="fast")


def test_video_without_opencv_reads_gif_and_explains_mp4(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if opencv-python were not installed
    gif = tmp_path / "clip.gif"
    _write_gif(gif)
    with open_camera("video", path=gif) as cam:
        assert _color(cam.latest(2.0)) == VIDEO_COLORS[0]
    mp4 = tmp_path / "clip.mp4"
    mp4.write_bytes(b"\x00" * 100)
    with pytest.raises(CameraError, match=r"OpenCV is not installed.*splitfit\[opencv\]"):
        open_camera("video", path=mp4).start()


# -- OpenCV VideoCapture (V4L2 / GStreamer) -----------------------------------------------


@pytest.mark.parametrize("device", ["/dev/video99", 99, "99"])
def test_opencv_missing_v4l2_device_fails_at_startup(device) -> None:
    pytest.importorskip("cv2")
    cam = open_camera("opencv", device=device)
    with pytest.raises(CameraError, match=r"no such V4L2 device /dev/video99"):
        cam.start()
    assert cam.status == STATUS_FAILED


def test_opencv_gstreamer_pipeline_needs_gstreamer_build() -> None:
    cv2 = pytest.importorskip("cv2")
    from hardware.camera.opencv_camera import jetson_csi_pipeline, opencv_has_gstreamer

    pipeline = jetson_csi_pipeline(sensor_id=1, width=1920, height=1080, fps=30)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 !")
    assert "appsink drop=true max-buffers=1" in pipeline
    if opencv_has_gstreamer(cv2):
        pytest.skip("this OpenCV has GStreamer; the missing-support error cannot be shown")
    with pytest.raises(CameraError, match="no GStreamer support"):
        open_camera("opencv", device=pipeline)


def test_opencv_absent_is_a_clear_configuration_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(CameraError, match=r"OpenCV is not installed"):
        open_camera("opencv", device=0)


@pytest.mark.parametrize(("params", "match"), [({"device": -1}, "index"), ({"width": 0}, "width")])
def test_opencv_bad_params(params: dict, match: str) -> None:
    pytest.importorskip("cv2")
    with pytest.raises(CameraError, match=match):
        open_camera("opencv", **params)


def test_opencv_capture_reads_rgb_and_reconnects_when_the_stream_ends(tmp_path: Path) -> None:
    """The live-camera path run for real against a file: end of stream = camera lost."""
    path = tmp_path / "clip.avi"
    _write_avi(path, fps=25.0)
    cam = open_camera("opencv", device=str(path), reconnect=FAST_RECONNECT)
    with cam:
        assert cam.kind == "other"
        wait_until(lambda: cam.reconnects >= 1, 5.0)
        frame = cam.latest(2.0)
        assert frame.image.shape == (48, 64, 3)
        assert any(_close_to(frame, c) for c in VIDEO_COLORS)
        assert cam.status in (STATUS_OK, STATUS_RECONNECTING)


def test_opencv_lost_device_reports_reconnecting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "clip.avi"
    _write_avi(path)
    cam = open_camera("opencv", device=str(path), reconnect=FAST_RECONNECT)
    with cam:
        path.unlink()  # gone for good: reopening fails, the source keeps trying
        wait_until(lambda: cam.status == STATUS_RECONNECTING and cam.reconnects == 0, 5.0)
        wait_until(lambda: _reconnect_failures(caplog) >= 3, 5.0)  # it keeps trying ...
        assert cam.status == STATUS_RECONNECTING and cam.reconnects == 0  # ... in vain
        assert "cannot open" in (cam.last_error or "")


# -- picamera2 ----------------------------------------------------------------------------


def test_picamera2_absent_is_a_clear_configuration_error() -> None:
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed here")
    with pytest.raises(CameraError, match=r"picamera2 module is not installed.*python3-picamera2"):
        open_camera("picamera2", width=640, height=480)


def test_picamera2_bad_params_are_rejected_before_import() -> None:
    with pytest.raises(CameraError, match="width"):
        open_camera("picamera2", width=0)


class _FakePicamera2:
    """The slice of picamera2's API the source uses, backed by a fixed frame.

    picamera2 needs libcamera and a Pi camera; this stands in at the module boundary so the
    source's own logic (configuration it asks for, channel handling, close) still runs.
    """

    instances: ClassVar[list[_FakePicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        if camera_num > 0:
            raise IndexError("list index out of range")  # what picamera2 raises for no camera
        self.config: dict | None = None
        self.started = False
        self.closed = False
        _FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict, buffer_count: int, controls: dict) -> dict:
        return {"main": main, "buffer_count": buffer_count, "controls": controls}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str) -> np.ndarray:
        w, h = self.config["main"]["size"]
        frame = np.zeros((h, w, 3), np.uint8)
        frame[..., 0] = 200  # first byte in memory: R for "BGR888"
        return frame

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_picamera2(monkeypatch):
    import types

    module = types.ModuleType("picamera2")
    module.Picamera2 = _FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    _FakePicamera2.instances.clear()
    return _FakePicamera2


@pytest.mark.parametrize(("swap_rb", "expected"), [(False, (200, 0, 0)), (True, (0, 0, 200))])
def test_picamera2_source_configures_rgb_and_closes(fake_picamera2, swap_rb, expected) -> None:
    with open_camera("picamera2", width=64, height=48, fps=15.0, swap_rb=swap_rb) as cam:
        frame = cam.latest(2.0)
        cam_obj = fake_picamera2.instances[-1]
        assert cam_obj.config["main"] == {"size": (64, 48), "format": "BGR888"}
        assert cam_obj.config["controls"] == {"FrameRate": 15.0}
        assert cam_obj.started
    assert frame.image.shape == (48, 64, 3) and _color(frame) == expected
    assert cam_obj.closed


def test_picamera2_missing_camera_fails_at_startup(fake_picamera2) -> None:
    with pytest.raises(CameraError, match="no camera 1"):
        open_camera("picamera2", camera_num=1).start()


@pytest.mark.slow
def test_consumer_survives_repeated_camera_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unplug/replug the 'camera' five times under a consumer that only ever sees frames
    or timeouts; afterwards the counters still add up and every frame was fresh."""
    root = tmp_path / "cam"
    _make_labelled(root)
    cam = open_camera("folder", path=root, fps=200.0, reconnect=FAST_RECONNECT)
    consumed: list[CapturedFrame] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            try:
                consumed.append(cam.latest(0.05))
            except CameraTimeout:
                continue
            except BaseException as exc:  # anything else is a bug
                errors.append(exc)
                return

    with cam:
        consumer = threading.Thread(target=consume)
        consumer.start()
        for _ in range(5):
            taken = len(consumed)
            wait_until(lambda n=taken: len(consumed) >= n + 5, 5.0)  # frames flow ...
            root.rename(tmp_path / "away")
            wait_until(lambda: cam.status == STATUS_RECONNECTING, 5.0)
            failed = _reconnect_failures(caplog)  # ... the camera is gone for a retry or two
            wait_until(lambda n=failed: _reconnect_failures(caplog) >= n + 1, 5.0)
            (tmp_path / "away").rename(root)
            wait_until(lambda: cam.status == STATUS_OK, 5.0)
        taken = len(consumed)
        wait_until(lambda: len(consumed) >= taken + 5, 5.0)  # ... and flow again
        stop.set()
        consumer.join(5.0)
        assert errors == []
        assert cam.reconnects == 5
        numbers = [f.frame_number for f in consumed]
        assert numbers == sorted(set(numbers))  # never a repeat, never going back
        pending = cam.frames_captured - cam.frames_dropped - len(consumed)
        assert pending in (0, 1)
