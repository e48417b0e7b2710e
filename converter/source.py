"""Load the PyTorch model the user hands to ``convert-head``.

Two serialisations are accepted, recognised by their content rather than their file name
(``head.pt`` is used for both in the wild):

* TorchScript (``torch.jit.save``): a zip with a ``code/`` folder.
* ``torch.export`` programs (``torch.export.save``, usually ``.pt2``): a zip with an
  ``archive_format`` record.

A ``torch.save`` pickle (state_dict or pickled module) is refused: loading it would run
arbitrary code and still not give us the architecture.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from converter.errors import SourceModelError
from wire.manifest import sha256_file

ModelKind = Literal["torchscript", "exported_program"]


@dataclass
class SourceModel:
    path: Path
    kind: ModelKind
    module: torch.nn.Module
    sha256: str
    # (C, H, W) the program was exported with; None for TorchScript (shape-agnostic).
    exported_input_chw: tuple[int, int, int] | None = None


def detect_kind(path: Path) -> ModelKind:
    """Classify a model file by its zip layout, with messages saying what it is instead."""
    if not path.exists():
        raise SourceModelError(f"model file not found: {path}")
    if not path.is_file():
        raise SourceModelError(f"model path is not a file: {path}")
    if not zipfile.is_zipfile(path):
        raise SourceModelError(
            f"not a model: {path} is not a TorchScript or torch.export archive "
            "(save the head with torch.jit.save or torch.export.save)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceModelError(f"not a model: {path} is a damaged archive ({exc})") from None
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
        return "exported_program"
    if any("/code/" in n or n.startswith("code/") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        raise SourceModelError(
            f"not a model: {path} is a torch.save checkpoint (state_dict or pickle) without "
            "the architecture; export the head with torch.jit.save or torch.export.save"
        )
    raise SourceModelError(f"not a model: {path} is a zip archive but not a PyTorch model")


def _exported_input_chw(ep: torch.export.ExportedProgram) -> tuple[int, int, int]:
    user_inputs = list(ep.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise SourceModelError(
            f"the exported program takes {len(user_inputs)} inputs; a head takes exactly one "
            "image tensor (N, 3, H, W)"
        )
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name == user_inputs[0]:
            val = node.meta.get("val")
            shape = tuple(getattr(val, "shape", ()))
            if len(shape) != 4:
                raise SourceModelError(
                    f"the exported program's input has shape {list(shape)}; expected (N, 3, H, W)"
                )
            try:
                c, h, w = (int(s) for s in shape[1:])
            except TypeError:
                raise SourceModelError(
                    "the exported program has a dynamic channel/height/width; export it with a "
                    "static input shape"
                ) from None
            return (c, h, w)
    raise SourceModelError("could not find the input of the exported program")


def load_source_model(path: Path) -> SourceModel:
    """Load and put the model in eval mode on CPU; every failure is a ``SourceModelError``."""
    path = Path(path)
    kind = detect_kind(path)
    digest = sha256_file(path)
    if kind == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError and friends with long texts
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SourceModelError(
                f"not a model: cannot load TorchScript {path}: {first}"
            ) from None
        module.eval()
        return SourceModel(path=path, kind=kind, module=module, sha256=digest)
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceModelError(
            f"not a model: cannot load torch.export program {path}: {first}"
        ) from None
    chw = _exported_input_chw(ep)
    module = ep.module()
    return SourceModel(path=path, kind=kind, module=module, sha256=digest, exported_input_chw=chw)
