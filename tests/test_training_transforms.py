"""The board-view transform feeds training's evaluation exactly what the device feeds the head."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from hardware.preprocess import preprocess  # noqa: E402
from training.data.transforms import BoardView, ImageTransform  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _photo(h: int = 300, w: int = 420) -> Image.Image:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1)
    noise = rng.integers(0, 40, size=(h, w, 3))
    return Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8))


def test_board_view_is_the_devices_preprocess_normalised() -> None:
    img = _photo()
    x = BoardView((224, 224), MEAN, STD)(img)
    assert x.shape == (3, 224, 224)
    m = torch.tensor(MEAN).view(3, 1, 1)
    s = torch.tensor(STD).view(3, 1, 1)
    pixels = (x * s + m).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(pixels, preprocess(img, size=(224, 224))[0])


def test_board_view_differs_from_the_classic_evaluation_crop() -> None:
    """The 256->224 crop sees a smaller field of view: the two must not be confused."""
    img = _photo()
    board = BoardView((224, 224), MEAN, STD)(img)
    classic = ImageTransform((224, 224), MEAN, STD, train=False)(img)
    assert float((board - classic).abs().mean()) > 0.05
