"""The ``cloud`` partition: the head's input picture goes to the server as a JPEG.

Why: on a fast link sending the picture and running the whole model on the server can cost
the board less time and energy than any head (issue #22; BottleNet's Algorithm 1 ranks
all-on-server beside the splits). The board runs no model: the frame is preprocessed to the
same uint8 input a head would get and coded with the ``jpeg_image`` codec at the configured
quality; the server holds the whole model as one more registry entry, paired by model_id
through the same HELLO/FRAME/REPLY protocol as a tail.

The ``[[heads]]`` entry's ``model`` (and ``manifest``) is the cloud model's manifest, the
``cloud.json`` that ``training.cloud_export`` writes next to ``cloud.pt``: the board reads
the model_id, the input size, labels and accuracy from it, and needs no model file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from device.config import HeadSection, ServerSection
from device.head import HeadError, ManifestIdentity
from wire.codecs import FeatureCodec
from wire.errors import CodecError
from wire.manifest import TAIL_FORMAT, TailManifest, load_tail_manifest
from wire.protocol import Hello
from wire.quant import QuantParams

CODEC = "jpeg_image"


class CloudInput(ManifestIdentity):
    """What a cloud partition has in place of a head: its manifest and the input size."""

    def __init__(self, name: str, manifest_path: Path) -> None:
        self.name = name
        if not Path(manifest_path).is_file():
            raise HeadError(f"cloud partition {name!r}: manifest {manifest_path} not found")
        fmt = _format_of(manifest_path)
        if fmt is not None and fmt != TAIL_FORMAT:
            raise HeadError(
                f"cloud partition {name!r}: {manifest_path} is not a cloud model's manifest "
                f"(format {fmt!r}, expected {TAIL_FORMAT!r}: the cloud.json written by "
                'training.cloud_export; a head.json belongs to kind = "split" or "local")'
            )
        try:
            self.manifest: TailManifest = load_tail_manifest(manifest_path)
        except (ValueError, KeyError) as exc:
            raise HeadError(
                f"cloud partition {name!r}: bad manifest {manifest_path}: {exc}"
            ) from None
        m = self.manifest
        c, h, w = (int(v) for v in m.input_chw)
        if (m.codec or {}).get("name") != CODEC or c != 3:
            raise HeadError(
                f"cloud partition {name!r}: {manifest_path} is not a cloud model's manifest "
                f"(codec {(m.codec or {}).get('name')!r}, input_chw {list(m.input_chw)}; "
                f"expected codec {CODEC!r} and 3 channels — export one with "
                'training.cloud_export, or use kind = "split" for a head)'
            )
        quant = (m.split or {}).get("quant") or {}
        try:
            self.quant = QuantParams(float(quant["scale"]), int(quant["zero_point"]), 8)
        except (KeyError, TypeError, ValueError) as exc:
            raise HeadError(
                f"cloud partition {name!r}: {manifest_path} split.quant must give the "
                f"pixel scale and zero_point ({exc})"
            ) from None
        self.input_hw = (h, w)
        self.shape_chw = (c, h, w)


def _format_of(path: Path) -> object:
    """The manifest's ``format`` field when the file is readable JSON (else the loader says)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def build_cloud(
    cfg: HeadSection, server: ServerSection, device_name: str
) -> tuple[CloudInput, FeatureCodec, Hello]:
    """The cloud partition's input, JPEG codec and HELLO (quality: config, else manifest)."""
    inp = CloudInput(cfg.name, cfg.manifest)
    params = dict((inp.manifest.codec or {}).get("params") or {})
    if cfg.quality is not None:
        params["quality"] = cfg.quality
    try:
        codec = FeatureCodec(inp.shape_chw, inp.quant, CODEC, params)
    except CodecError as exc:
        raise HeadError(f"cloud partition {cfg.name!r}: {exc}") from None
    hello = Hello(
        model_id=inp.model_id,
        tensor_shape=inp.shape_chw,
        dtype="int8",
        scale=inp.quant.scale,
        zero_point=inp.quant.zero_point,
        bits=8,
        codec=CODEC,
        codec_params=dict(codec.params),
        device_name=device_name,
        max_payload=server.max_payload,
        token_id=server.token_id,
    )
    return inp, codec, hello


def encode_picture(codec: FeatureCodec, image: np.ndarray) -> bytes:
    """The preprocessed uint8 (1, H, W, 3) input -> the JPEG payload."""
    return codec.encode_codes(np.ascontiguousarray(image[0].transpose(2, 0, 1)))
