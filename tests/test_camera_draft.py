"""The folder camera decodes JPEGs only as large as the head needs (issue #18 item 9).

The demo's photos include a 1024×683 JPEG; decoding it at full size for a 224×224 head cost
memory (three frames alive at once: primed, in the slot, in the pipeline) and CPU time that
competed with the head's threads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.capture import CameraSupervisor
from device.config import CameraSection
from hardware.camera import CameraError
from hardware.camera.folder import FolderCamera, load_rgb
from hardware.preprocess import preprocess


def _photo(path: Path, size: tuple[int, int] = (1024, 683), fmt: str = "JPEG") -> Path:
    # Smooth content (gradients + a few discs): what a photo looks like to a downscaler.
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [
            (xx * 255 // w),
            (yy * 255 // h),
            (128 + 100 * np.sin(xx / 37.0) * np.cos(yy / 23.0)),
        ],
        axis=-1,
    ).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return path


def _first_frame(cam: FolderCamera) -> np.ndarray:
    cam.start()
    try:
        return cam.latest(5.0).image
    finally:
        cam.stop()


def test_a_1024px_jpeg_decodes_at_half_scale_for_a_224px_head(tmp_path):
    _photo(tmp_path / "cam" / "a.jpg")
    full = _first_frame(FolderCamera(path=tmp_path / "cam", fps=0))
    small = _first_frame(FolderCamera(path=tmp_path / "cam", fps=0, min_size=(224, 224)))
    assert full.shape == (683, 1024, 3)
    # 1/2 is the smallest DCT scale still covering 224 in both directions (1/4 is 256×171).
    assert small.shape == (342, 512, 3)
    assert small.nbytes * 4 <= full.nbytes + 4 * 1024 * 3
    # Same picture: the head's input differs by a fraction of a grey level on average.
    a = preprocess(full, (224, 224)).astype(np.int16)
    b = preprocess(small, (224, 224)).astype(np.int16)
    assert np.abs(a - b).mean() < 2.0


def test_scale_stops_where_the_frame_would_no_longer_cover_the_head(tmp_path):
    path = _photo(tmp_path / "b.jpg", size=(2048, 2048))
    assert load_rgb(path, (224, 224)).shape == (256, 256, 3)  # 1/8
    assert load_rgb(path, (300, 300)).shape == (512, 512, 3)  # 1/4: 1/8 would be 256 < 300
    assert load_rgb(path, (2048, 2048)).shape == (2048, 2048, 3)
    assert load_rgb(path).shape == (2048, 2048, 3)


def test_non_jpeg_images_decode_at_full_size(tmp_path):
    path = _photo(tmp_path / "c.png", size=(640, 480), fmt="PNG")
    assert load_rgb(path, (224, 224)).shape == (480, 640, 3)


def test_the_daemons_camera_supervisor_passes_the_head_size_to_the_camera(tmp_path):
    _photo(tmp_path / "cam" / "a.jpg")
    cfg = CameraSection(source="folder", params={"path": str(tmp_path / "cam"), "fps": 0.0})
    sup = CameraSupervisor(cfg, min_size=(224, 224))
    try:
        frame = None
        for _ in range(50):
            frame = sup.latest(0.2)
            if frame is not None:
                break
        assert frame is not None
        assert frame.image.shape == (342, 512, 3)
    finally:
        sup.stop()


@pytest.mark.parametrize("bad", [(0, 224), (224, -1), (224.0, 224), (True, 224)])
def test_bad_min_size_is_a_camera_error(tmp_path, bad):
    with pytest.raises(CameraError, match="min_size"):
        FolderCamera(path=tmp_path, min_size=bad)
