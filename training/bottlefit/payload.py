"""Byte accounting: what the board would send for a split, next to a JPEG of the same view.

Why apart: bytes are measured with the real wire codec (``wire.codecs``), not estimated,
and the codes a zstd dictionary is fit on come from the same quantiser.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from training.bottleneck import SplitHead
from training.compressor import CodecConfig, quant_params_for


@torch.no_grad()
def wire_bytes(
    head: SplitHead, x: torch.Tensor, codec: CodecConfig, tables: dict | None = None
) -> list[int]:
    """Payload sizes the device would send for the images ``x`` (the real wire codec)."""
    from wire.codecs import FeatureCodec
    from wire.quant import quantize_float_to_int8

    spec = head.spec  # type: ignore[attr-defined]
    qp = quant_params_for(spec.out_max, codec.bits)
    fc = FeatureCodec(tuple(spec.bottleneck_chw), qp, codec.name, dict(codec.params), tables=tables)
    head.eval()
    z = head(x).numpy()
    return [len(fc.encode_int8(quantize_float_to_int8(zi, qp), layout="CHW")) for zi in z]


@torch.no_grad()
def split_codes(head: SplitHead, feats: torch.Tensor, bits: int, bs: int = 64) -> np.ndarray:
    """The n-bit wire codes of cached split features (what a zstd dictionary is fit on)."""
    from wire.quant import quantize_float_to_int8, requantize_int8

    qp = quant_params_for(head.spec.out_max, bits)  # type: ignore[attr-defined]
    head.eval()
    z = torch.cat([head.reduction(feats[i : i + bs].float()) for i in range(0, len(feats), bs)])
    return requantize_int8(quantize_float_to_int8(z.numpy(), qp), qp)


def jpeg_bytes(img: Image.Image, size: tuple[int, int], quality: int = 85) -> int:
    """Bytes of a JPEG of the evaluation view (resize + centre crop) of ``img``."""
    import io

    from training.data.transforms import resize_center_crop

    buf = io.BytesIO()
    resize_center_crop(img.convert("RGB"), size).save(buf, format="JPEG", quality=quality)
    return buf.tell()
