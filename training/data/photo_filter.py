"""Which images of a package count as photos: size and colour-richness rules.

Why these rules: the packages also hold icons, cartoons, letters and gradients. A real
photograph has thousands of distinct colours even at thumbnail size, drawings and renders
far fewer, so "more than 2,500 colours in a 128-px thumbnail" separates them cheaply (it was
checked by eye on the 11 packages). Scenes must be large enough to crop a 224² view from
(shorter side >= 200 px); cut-outs are pasted scaled onto scenes, so only their longer
side matters (>= 150 px). Colours of a cut-out are counted on its opaque pixels only,
otherwise a large transparent border would be counted as one more colour and a clean
object on white as photo-poor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Kind = Literal["scene", "cutout"]
MIN_SCENE_SHORT_SIDE = 200
MIN_CUTOUT_LONG_SIDE = 150
MIN_COLOURS = 2_500
THUMBNAIL = 128
# a cut-out: at least this share of pixels (nearly) transparent
CUTOUT_TRANSPARENT_SHARE = 0.05


@dataclass(frozen=True)
class Verdict:
    keep: bool
    kind: Kind
    colours: int
    reason: str  # why it was dropped ("" when kept)


def has_transparency(img: Image.Image, share: float = CUTOUT_TRANSPARENT_SHARE) -> bool:
    """True when at least ``share`` of the pixels are (nearly) transparent."""
    if img.mode not in ("RGBA", "LA", "PA") and "transparency" not in img.info:
        return False
    alpha = np.asarray(img.convert("RGBA"))[..., 3]
    return float((alpha < 128).mean()) >= share


def thumbnail_colours(img: Image.Image, size: int = THUMBNAIL) -> int:
    """Distinct RGB colours of the (opaque part of the) image shrunk to fit ``size`` px."""
    thumb = img.convert("RGBA")
    thumb.thumbnail((size, size), Image.BILINEAR)
    px = np.asarray(thumb).reshape(-1, 4)
    px = px[px[:, 3] >= 128]
    if len(px) == 0:
        return 0
    packed = (px[:, 0].astype(np.uint32) << 16) | (px[:, 1].astype(np.uint32) << 8) | px[:, 2]
    return len(np.unique(packed))


def judge(img: Image.Image, kind: Kind | Literal["auto"] = "auto") -> Verdict:
    """Keep or drop ``img``; ``auto`` calls it a cut-out when it has a transparent background."""
    resolved: Kind = kind if kind != "auto" else ("cutout" if has_transparency(img) else "scene")
    w, h = img.size
    colours = thumbnail_colours(img)
    if resolved == "scene" and min(w, h) < MIN_SCENE_SHORT_SIDE:
        return Verdict(False, resolved, colours, f"shorter side {min(w, h)} < 200 px")
    if resolved == "cutout" and max(w, h) < MIN_CUTOUT_LONG_SIDE:
        return Verdict(False, resolved, colours, f"longer side {max(w, h)} < 150 px")
    if colours <= MIN_COLOURS:
        return Verdict(False, resolved, colours, f"{colours} colours <= 2500 (not a photo)")
    return Verdict(True, resolved, colours, "")
