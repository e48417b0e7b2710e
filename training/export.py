"""Export a split model: ``head.pt`` + ``head.pt.json`` and ``tail.pt`` + ``tail.json``.

Both halves are TorchScript (``torch.jit.trace`` + ``torch.jit.save``) so they load with
plain ``torch.jit.load`` in a process that has never seen splitfit's classes.

* ``head.pt``: input float NCHW normalised with the training mean/std on [0, 1] pixels
  (recorded in ``head.pt.json`` so ``convert-head`` folds it in and the TFLite head eats
  raw uint8); output the bottleneck *before* quantization, bounded to [0, out_max].
* ``tail.pt``: input the dequantized bottleneck (float N×C'×h×w), output logits.

``model_id`` is a sha256 over the split spec and every tensor of the head's and the tail's
state dicts (names, dtypes, shapes, bytes): any weight change gives a new id, and the
device/server refuse to pair halves with different ids.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from training.bottleneck import SplitHead, SplitSpec, SplitTail
from training.compressor import CodecConfig, quant_params_for
from wire.codecs import codec_class
from wire.entropy_tables import EntropyTables, tables_to_json
from wire.manifest import HeadSourceManifest, TailManifest, save_manifest


@dataclass(frozen=True)
class ExportedSplit:
    model_id: str
    head: Path
    head_manifest: Path
    tail: Path
    tail_manifest: Path


def model_id_of(head: nn.Module, tail: nn.Module, spec: SplitSpec) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for prefix, module in (("head.", head), ("tail.", tail)):
        for name, t in sorted(module.state_dict().items()):
            t = t.detach().to("cpu").contiguous()
            h.update(f"{prefix}{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(
                t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes()
            )
    return h.hexdigest()


def _save_script(module: nn.Module, example: torch.Tensor, path: Path) -> torch.jit.ScriptModule:
    # TF-"SAME" padding reads the input size while tracing; it is baked in on purpose
    # (the head is exported for one input size, recorded in the manifest).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, example, check_trace=False)
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(traced, str(tmp))
    tmp.replace(path)
    return traced


def export_split(
    head: SplitHead,
    tail: SplitTail,
    out_dir: Path | str,
    *,
    labels: list[str] | tuple[str, ...],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    codec: CodecConfig,
    extra: dict | None = None,
    tables: dict[str, EntropyTables] | None = None,
) -> ExportedSplit:
    """Write the four files atomically and verify the saved programs reproduce the modules.

    ``tables`` (from a rate-trained entropy model, ``training.entropy_model``) go into both
    manifests' ``codec.tables`` under this export's model_id, so the board and the server
    hold the same ones; a table codec's ``params.tables`` names them by hash.
    """
    spec: SplitSpec = head.spec  # type: ignore[assignment]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = head.to("cpu").eval()
    tail = tail.to("cpu").eval()
    if len(labels) != tail.classifier.fc.out_features:
        raise ValueError(
            f"{len(labels)} labels for a classifier with {tail.classifier.fc.out_features} outputs"
        )
    model_id = model_id_of(head, tail, spec)
    x = torch.rand(1, 3, *spec.input_hw)
    with torch.no_grad():
        z = head(x)
        logits = tail(z)
    head_path, tail_path = out / "head.pt", out / "tail.pt"
    head_ts = _save_script(head, x, head_path)
    tail_ts = _save_script(tail, z, tail_path)
    with torch.no_grad():
        head_err = float((torch.jit.load(str(head_path))(x) - z).abs().max())
        tail_err = float((torch.jit.load(str(tail_path))(z) - logits).abs().max())
    del head_ts, tail_ts
    if head_err > 1e-4 or tail_err > 1e-3:
        raise RuntimeError(f"exported programs disagree with the modules: {head_err}, {tail_err}")
    qp = quant_params_for(spec.out_max, codec.bits)
    split_info = {
        **spec.to_dict(),
        "quant": {
            "scale": qp.scale,
            "zero_point": qp.zero_point,
            "output_range": [0.0, spec.out_max],
        },
    }
    common_extra = {
        "split": split_info,
        "torch_version": torch.__version__,
        "export_check": {"head_max_abs_err": head_err, "tail_max_abs_err": tail_err},
        "normalization_pixel_range": [0.0, 1.0],
        **(extra or {}),
    }
    codec_dict = codec.to_dict()
    if tables:
        codec_dict["tables"] = tables_to_json(tables)
        kind = codec_class(str(codec_dict["name"])).table_kind
        held = tables.get(kind) if kind else None
        if held is not None:
            codec_dict["params"] = {**codec_dict["params"], "tables": held.sha256}
    head_manifest = HeadSourceManifest(
        model_id=model_id,
        input_hw=list(spec.input_hw),
        normalization={"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
        labels=list(labels),
        bottleneck_chw=list(spec.bottleneck_chw),
        codec=codec_dict,
        extra=common_extra,
    )
    tail_manifest = TailManifest(
        model_id=model_id,
        input_chw=list(spec.bottleneck_chw),
        num_classes=len(labels),
        labels=list(labels),
        codec=codec_dict,
        split=split_info,
        extra={k: v for k, v in common_extra.items() if k != "split"}
        | {"normalization": {"mean": list(mean), "std": list(std)}},
    )
    head_json, tail_json = out / "head.pt.json", out / "tail.json"
    save_manifest(head_manifest, head_json)
    save_manifest(tail_manifest, tail_json)
    return ExportedSplit(model_id, head_path, head_json, tail_path, tail_json)
