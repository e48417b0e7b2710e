"""Export a whole model for the ``cloud`` partition: ``cloud.pt`` + ``cloud.json``.

Why a "tail" and not a server feature of its own: the server pairs devices with models by
``model_id`` and decodes each session's payload with the codec its HELLO names. A cloud model
is then just one more registry entry whose input is the picture: the manifest says
``input_chw = [3, H, W]``, codec ``jpeg_image`` (the board's preprocessed uint8 input as a
colour JPEG) and ``split.quant = {scale: 1/255, zero_point: -128}``, so the server's ordinary
dequantization hands the model ``pixel / 255``. The exported program normalizes with the
training mean/std itself and runs the full network, so the server needs no code for it.

Files are TorchScript (``torch.jit.trace``) written atomically; ``model_id`` is a sha256 over
the input size, the normalization and every tensor of the state dict, like a split's.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from wire.codecs import normalize_params
from wire.manifest import TailManifest, save_manifest, sha256_file

#: HELLO's quantization for a picture: code = pixel (bits 8), value = scale * (code - 128 - zp)
PIXEL_SCALE = 1.0 / 255.0
PIXEL_ZERO_POINT = -128
DEFAULT_QUALITY = 85  # the e2e cloud baseline's quality: ~15 kB for a 224² photo


@dataclass(frozen=True)
class ExportedCloud:
    model_id: str
    model: Path
    manifest: Path


class NormalizedModel(nn.Module):
    """``pixel / 255`` in, logits out: the training normalization, then the whole network."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def cloud_model_id(module: nn.Module, input_hw: tuple[int, int]) -> str:
    h = hashlib.sha256(json.dumps({"kind": "cloud", "input_hw": list(input_hw)}).encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.float().numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())
    return h.hexdigest()


def export_cloud(
    model: nn.Module,
    out_dir: Path | str,
    *,
    input_hw: tuple[int, int],
    labels: list[str] | tuple[str, ...],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    quality: int = DEFAULT_QUALITY,
    name: str = "cloud",
    extra: dict | None = None,
) -> ExportedCloud:
    """Write ``NAME.pt`` + ``NAME.json`` into ``out_dir`` and check the saved program.

    ``model`` takes normalized float NCHW and returns (N, len(labels)) logits.
    """
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean/std must be 3 values each, std > 0; got {mean}, {std}")
    params = normalize_params("jpeg_image", {"quality": quality})  # CodecError when out of range
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wrapped = NormalizedModel(model.to("cpu").eval(), tuple(mean), tuple(std)).eval()
    h, w = (int(v) for v in input_hw)
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        logits = wrapped(x)
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(
            f"{len(labels)} labels for a model that outputs {tuple(logits.shape)} on (2, 3, {h}, {w})"
        )
    path = out / f"{name}.pt"
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapped, x, check_trace=False)
    torch.jit.save(traced, str(tmp))
    tmp.replace(path)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        err = float((torch.jit.load(str(path))(x) - logits).abs().max())
    if err > 1e-3:
        raise RuntimeError(f"the saved {path.name} disagrees with the model (max |err| {err})")
    model_id = cloud_model_id(wrapped, (h, w))
    manifest = TailManifest(
        model_id=model_id,
        input_chw=[3, h, w],
        num_classes=len(labels),
        labels=list(labels),
        codec={"name": "jpeg_image", "bits": 8, "params": params},
        split={
            "kind": "cloud",
            "input_hw": [h, w],
            "quant": {"scale": PIXEL_SCALE, "zero_point": PIXEL_ZERO_POINT},
        },
        extra={
            "tail_sha256": sha256_file(path),
            "normalization": {"mean": list(mean), "std": list(std)},
            "torch_version": torch.__version__,
            "export_check": {"max_abs_err": err},
            **(extra or {}),
        },
    )
    json_path = out / f"{name}.json"
    save_manifest(manifest, json_path)
    return ExportedCloud(model_id, path, json_path)
