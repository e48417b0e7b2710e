"""Model registry: the tails this server can run, keyed by model_id.

Why verify at load time: a tail is a TorchScript file plus a ``tail.json`` manifest written
by training export. If the two disagree (wrong input shape, wrong number of classes, labels
that do not match the outputs, a file whose hash is not the one recorded) every device
would get confidently wrong answers. The registry runs one dry batch through each tail and
refuses to start rather than serve a mismatched pair.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wire.entropy_tables import EntropyTables
from wire.manifest import TailManifest, load_tail_manifest, sha256_file


class RegistryError(ValueError):
    """A tail that cannot be served; the message names the file and the disagreement."""


#: A HELLO's scale may differ from the one the tail was trained with (``split.quant.scale``
#: in tail.json) by at most this factor either way. Why a factor and not equality: a head
#: converted with a calibrated or ``--output-range`` range gets a somewhat different scale
#: and still works; 4x off means the tail sees activations 4x outside (or coarser than) what
#: it was trained on, i.e. wrong answers, and 1e300 means inf/NaN in the tail.
SCALE_TOLERANCE = 4.0
#: Bounds for a tail whose manifest records no quantization: float32 dequantization must
#: neither underflow to 0 nor send activations past any trained range (255 * 1e3).
MIN_SCALE = 1.1754943508222875e-38  # float32 tiny
UNRECORDED_MAX_SCALE = 1e3
_MAX_RECORDED_SCALE = 3.4028234663852886e38 / 256  # float32 max / 256


@dataclass(frozen=True)
class TrainedQuant:
    """The int8 quantization of the bottleneck the tail was trained with (tail.json)."""

    scale: float
    zero_point: int

    def scale_bounds(self) -> tuple[float, float]:
        return self.scale / SCALE_TOLERANCE, self.scale * SCALE_TOLERANCE


def _trained_quant(split: Any, manifest_path: Path) -> TrainedQuant | None:
    """``split.quant`` as training export writes it, validated; None when it is absent."""
    quant = split.get("quant") if isinstance(split, dict) else None
    if quant is None:
        return None
    if not isinstance(quant, dict):
        raise RegistryError(f"{manifest_path}: split.quant must be an object")
    scale, zero_point = quant.get("scale"), quant.get("zero_point")
    if (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not math.isfinite(scale)
        or not MIN_SCALE <= scale <= _MAX_RECORDED_SCALE
    ):
        raise RegistryError(
            f"{manifest_path}: split.quant.scale must be a positive finite number "
            f"float32 can dequantize with, got {scale!r}"
        )
    if (
        isinstance(zero_point, bool)
        or not isinstance(zero_point, int)
        or not -128 <= zero_point <= 127
    ):
        raise RegistryError(
            f"{manifest_path}: split.quant.zero_point must be an int in -128..127, "
            f"got {zero_point!r}"
        )
    return TrainedQuant(float(scale), int(zero_point))


def pick_device(preference: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RegistryError("compute.device = 'cuda' but torch sees no CUDA device")
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


@dataclass
class TailModel:
    """One loaded tail and what the server needs to know about it."""

    model_id: str
    manifest: TailManifest
    module: torch.jit.ScriptModule
    device: torch.device
    path: Path
    trained_quant: TrainedQuant | None = None
    #: entropy tables from tail.json (``codec.tables``), parsed once: table codecs' HELLOs
    #: must name these by hash
    codec_tables: dict[str, EntropyTables] = field(default_factory=dict)

    @property
    def input_chw(self) -> tuple[int, int, int]:
        c, h, w = self.manifest.input_chw
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return int(self.manifest.num_classes)

    def label(self, class_id: int) -> str:
        labels = self.manifest.labels
        return labels[class_id] if class_id < len(labels) else str(class_id)

    def expected_bits(self) -> int | None:
        """Bit depth the tail was trained for, when its manifest records one."""
        bits = (self.manifest.codec or {}).get("bits")
        return int(bits) if isinstance(bits, int) and not isinstance(bits, bool) else None

    def scale_bounds(self) -> tuple[float, float]:
        """The HELLO scales this tail accepts: near the trained one, or merely sane."""
        if self.trained_quant is not None:
            return self.trained_quant.scale_bounds()
        return MIN_SCALE, UNRECORDED_MAX_SCALE

    def topk(self, batch: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Run the tail on (N, C, H, W) float32; return (ids, softmax scores), each (N, k)."""
        k = min(k, self.num_classes)
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            logits = self.module(x)
            scores, ids = torch.softmax(logits.float(), dim=1).topk(k, dim=1)
        return ids.cpu().numpy(), scores.cpu().numpy()


def load_tail(tail_path: Path, manifest_path: Path, device: torch.device) -> TailModel:
    """Load and cross-check one tail.pt + tail.json pair."""
    if not tail_path.is_file():
        raise RegistryError(f"tail file {tail_path} does not exist")
    try:
        manifest = load_tail_manifest(manifest_path)
    except Exception as exc:  # the manifest loader's own errors name the key
        raise RegistryError(f"{manifest_path}: {exc}") from None

    chw = list(manifest.input_chw)
    if len(chw) != 3 or not all(isinstance(v, int) and v > 0 for v in chw):
        raise RegistryError(f"{manifest_path}: input_chw must be 3 positive integers, got {chw}")
    if manifest.num_classes < 1:
        raise RegistryError(f"{manifest_path}: num_classes must be >= 1")
    if manifest.labels and len(manifest.labels) != manifest.num_classes:
        raise RegistryError(
            f"{manifest_path}: {len(manifest.labels)} labels but num_classes = {manifest.num_classes}"
        )
    trained_quant = _trained_quant(manifest.split, manifest_path)
    recorded = (manifest.extra or {}).get("tail_sha256")
    if recorded is not None and recorded != sha256_file(tail_path):
        raise RegistryError(
            f"{tail_path}: sha256 differs from tail_sha256 recorded in {manifest_path}"
        )

    try:
        with warnings.catch_warnings():
            # torch 2.13 flags TorchScript as deprecated; it is still the export format.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(tail_path), map_location=device)
    except Exception as exc:
        raise RegistryError(
            f"{tail_path}: not a loadable TorchScript file ({exc.__class__.__name__})"
        ) from None
    module.eval()

    probe = torch.zeros((2, *chw), dtype=torch.float32, device=device)
    try:
        with torch.inference_mode():
            out = module(probe)
    except Exception as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else exc.__class__.__name__
        raise RegistryError(
            f"{tail_path} does not accept the manifest's input (2, {', '.join(map(str, chw))}): {first}"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, manifest.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RegistryError(
            f"{tail_path} outputs {shape} for a batch of 2, but {manifest_path} says "
            f"num_classes = {manifest.num_classes}"
        )
    return TailModel(
        manifest.model_id,
        manifest,
        module,
        device,
        tail_path,
        trained_quant,
        manifest.codec_tables(),
    )


class ModelRegistry:
    """Tails by model_id; duplicates are refused."""

    def __init__(self, models: Sequence[TailModel] = ()) -> None:
        self._models: dict[str, TailModel] = {}
        for model in models:
            self.add(model)

    def add(self, model: TailModel) -> None:
        if model.model_id in self._models:
            other = self._models[model.model_id].path
            raise RegistryError(
                f"model_id {model.model_id} is served twice ({other} and {model.path})"
            )
        self._models[model.model_id] = model

    def get(self, model_id: str) -> TailModel | None:
        return self._models.get(model_id)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def __iter__(self) -> Iterator[TailModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def ids(self) -> list[str]:
        return list(self._models)
