"""The source manifest training export writes beside a head (``head.pt.json``).

Format ``splitfit-head-source/1`` (``wire.manifest.HeadSourceManifest``): model_id, input
size, normalisation, labels, bottleneck shape, codec defaults, extra (split info). When it
is present the converter takes its defaults from it and, above all, carries its
``model_id`` into ``head.json`` so the device and the tail server agree they hold two halves
of the same split model.

Looked for as ``<model>.json`` (``head.pt.json``) and then ``<stem>.json`` (``head.json``);
the second name is also what the converter itself writes, so a file there is used only when
it declares the source format.
"""

from __future__ import annotations

import json
from pathlib import Path

from converter.errors import SourceModelError
from wire.errors import ManifestError
from wire.manifest import HEAD_SOURCE_FORMAT, HeadSourceManifest, load_head_source_manifest


def candidate_paths(model_path: Path) -> list[Path]:
    model_path = Path(model_path)
    cands = [model_path.with_name(model_path.name + ".json")]
    if model_path.suffix and model_path.suffix != ".json":
        cands.append(model_path.with_suffix(".json"))
    return cands


def _declared_format(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def find_source_manifest(model_path: Path) -> tuple[Path, HeadSourceManifest] | None:
    """The validated source manifest beside ``model_path``, or None.

    ``head.pt.json`` is named after the model, so if it exists it must be valid (a broken
    one is an error, not silently ignored); ``head.json`` counts only if it declares
    the source format.
    """
    exact, *others = candidate_paths(model_path)
    if exact.is_file():
        return exact, _load(exact)
    for cand in others:
        if cand.is_file() and _declared_format(cand) == HEAD_SOURCE_FORMAT:
            return cand, _load(cand)
    return None


def _load(path: Path) -> HeadSourceManifest:
    try:
        return load_head_source_manifest(path)
    except ManifestError as exc:
        raise SourceModelError(f"bad source manifest: {exc}") from None
