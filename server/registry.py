"""Model registry: the tails this server can run, keyed by model_id.

Why verify at load time: a tail is a TorchScript file plus a ``tail.json`` manifest written
by training export. If the two disagree (wrong input shape, wrong number of classes, labels
that do not match the outputs, a file whose hash is not the one recorded) every device
would get confidently wrong answers. The registry runs one dry batch through each tail and
refuses to start rather than serve a mismatched pair.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wire.manifest import TailManifest, load_tail_manifest, sha256_file


class RegistryError(ValueError):
    """A tail that cannot be served; the message names the file and the disagreement."""


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
    return TailModel(manifest.model_id, manifest, module, device, tail_path)


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
