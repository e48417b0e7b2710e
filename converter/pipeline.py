"""``convert_head``: the whole route, from a PyTorch head to a verified int8 TFLite file.

Steps (docs/converter.md explains the choices):
  1. load the model and the source manifest beside it; resolve input size, mean/std, labels
  2. read calibration images (resize + centre crop like the board), hold some out
  3. wrap the head with the folded normalisation; float reference outputs in PyTorch
  4. PyTorch -> ONNX (+ max-pool zero-padding rewrite, stem-conv split for int8 speed)
  5. ONNX -> onnx2tf -> TFLiteConverter full int8 (subprocess, ``converter.tf_worker``)
  6. load + run the result with ai-edge-litert (subprocess, ``converter.probe``)
  7. check: integer tensors only, uint8 pixel input (1/255, 0), int8 NHWC output
  8. verify against PyTorch (cosine, abs errors, top-1 with a tail); gate on --min-cosine
  9. write head.tflite + head.json atomically (temp files, then os.replace)
Nothing is written to the output paths unless every step succeeded.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import torch

from converter.errors import (
    CalibrationError,
    ConversionError,
    InputSizeError,
    InvalidModelError,
    SourceModelError,
    VerificationError,
)
from converter.images import (
    ImageSet,
    ensure_full_range,
    load_image_folder,
    split_holdout,
    synthetic_images,
)
from converter.model_check import check_integer_model, run_probe
from converter.normalize import wrap_for_export
from converter.onnx_export import export_onnx
from converter.onnx_graph import op_counts
from converter.outputs import install_outputs
from converter.source import SourceModel, load_source_model
from converter.source_manifest import find_source_manifest
from converter.tensorflow_stage import run_worker
from converter.verify import Verification, compare, dequantize, top1_agreement
from wire.errors import ManifestError
from wire.manifest import HeadManifest, HeadSourceManifest, TensorSpec, sha256_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_HW = (224, 224)
DEFAULT_CODEC = {"name": "jpeg", "bits": 8, "params": {"quality": 20}}

Warn = Callable[[str], None]


@dataclass
class ConvertOptions:
    model: Path
    output: Path
    calib_dir: Path | None = None
    calib_synthetic: int | None = None
    input_hw: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    labels_file: Path | None = None
    tail: Path | None = None
    min_cosine: float = 0.99
    output_range: tuple[float, float] | None = None
    manifest_path: Path | None = None
    # also write a float32 TFLite of the same graph here (benchmarks compare against it)
    float_tflite: Path | None = None
    # split wide-kernel convs on few channels for XNNPACK's int8 kernels (converter.narrow_conv);
    # off only to measure what the rewrite buys (benchmarks/converter.py)
    split_narrow_convs: bool = True
    progress: bool = True
    seed: int = 0


@dataclass
class ConvertResult:
    tflite_path: Path
    manifest_path: Path
    manifest: HeadManifest
    verification: Verification
    timings: dict[str, float] = field(default_factory=dict)


def _stderr_warn(msg: str) -> None:
    print(f"convert-head: warning: {msg}", file=sys.stderr)


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("splitfit", "torch", "onnx", "onnx2tf", "tensorflow", "ai-edge-litert", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def read_labels(path: Path) -> list[str]:
    """One label per line (blank lines ignored), or a JSON list of strings."""
    path = Path(path)
    if not path.is_file():
        raise SourceModelError(f"labels file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceModelError(f"cannot read labels file {path}: {exc}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SourceModelError(f"labels file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise SourceModelError(f"labels file {path} must hold a JSON list of strings")
        return data
    labels = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not labels:
        raise SourceModelError(f"labels file {path} is empty")
    return labels


def _validate_options(opts: ConvertOptions) -> None:
    if (opts.calib_dir is None) == (opts.calib_synthetic is None):
        raise CalibrationError("give exactly one of --calib DIR or --calib-synthetic N")
    if not (-1.0 <= opts.min_cosine <= 1.0) or math.isnan(opts.min_cosine):
        raise ConversionError(f"--min-cosine must be in [-1, 1], got {opts.min_cosine}")
    if opts.output.suffix != ".tflite":
        raise ConversionError(f"output must end in .tflite, got {opts.output}")
    if not opts.output.parent.is_dir():
        raise ConversionError(f"output folder does not exist: {opts.output.parent}")
    if opts.input_hw is not None and (min(opts.input_hw) < 8 or max(opts.input_hw) > 4096):
        raise InputSizeError(f"--input-size must be between 8 and 4096, got {opts.input_hw}")
    for name, triple in (("--mean", opts.mean), ("--std", opts.std)):
        if triple is not None and not all(math.isfinite(v) for v in triple):
            raise ConversionError(f"{name} values must be finite numbers")
    if opts.std is not None and min(opts.std) <= 0:
        raise ConversionError(f"--std values must be > 0, got {list(opts.std)}")


def _resolve_input_hw(
    opts: ConvertOptions,
    src: SourceModel,
    sm: HeadSourceManifest | None,
    sm_name: str,
    warn: Warn,
) -> tuple[int, int]:
    if src.exported_input_chw is not None and src.exported_input_chw[0] != 3:
        raise InputSizeError(
            f"the head takes {src.exported_input_chw[0]} input channels; the board feeds RGB, "
            "so the head must take 3"
        )
    exported_hw = src.exported_input_chw[1:] if src.exported_input_chw else None
    manifest_hw = sm.input_hw if sm else None
    if opts.input_hw is not None:
        if exported_hw is not None and tuple(opts.input_hw) != tuple(exported_hw):
            raise InputSizeError(
                f"input size mismatch: the torch.export program was exported for "
                f"{exported_hw[0]}x{exported_hw[1]}, --input-size asks for "
                f"{opts.input_hw[0]}x{opts.input_hw[1]}; re-export it at that size or omit "
                "--input-size"
            )
        if manifest_hw is not None and tuple(opts.input_hw) != tuple(manifest_hw):
            raise InputSizeError(
                f"input size mismatch: {sm_name} says the head was trained for "
                f"{manifest_hw[0]}x{manifest_hw[1]}, --input-size asks for "
                f"{opts.input_hw[0]}x{opts.input_hw[1]}"
            )
        return tuple(opts.input_hw)
    if exported_hw is not None:
        if manifest_hw is not None and tuple(manifest_hw) != tuple(exported_hw):
            raise InputSizeError(
                f"input size mismatch: {sm_name} says {manifest_hw[0]}x{manifest_hw[1]} "
                f"but the program was exported for {exported_hw[0]}x{exported_hw[1]}"
            )
        return tuple(exported_hw)
    if manifest_hw is not None:
        return tuple(manifest_hw)
    warn(
        f"no --input-size and no source manifest: using {DEFAULT_INPUT_HW[0]}x{DEFAULT_INPUT_HW[1]}"
    )
    return DEFAULT_INPUT_HW


def _to_float_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 NHWC pixels -> float NCHW in [0, 1]: what the wrapped head (and TFLite) sees."""
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def _float_reference(
    wrapped: torch.nn.Module, pixels: np.ndarray, hw: tuple[int, int]
) -> np.ndarray:
    """Float head outputs (N, C, h, w); shape errors become InputSizeError."""
    outs = []
    with torch.no_grad():
        for i in range(pixels.shape[0]):
            try:
                y = wrapped(_to_float_input(pixels[i : i + 1]))
            except Exception as exc:
                text = str(exc).strip().splitlines()
                first = text[0] if text else type(exc).__name__
                raise InputSizeError(
                    f"input size mismatch: the head does not accept a 1x3x{hw[0]}x{hw[1]} "
                    f"input ({first[:300]})"
                ) from None
            if not isinstance(y, torch.Tensor) or y.dim() != 4 or y.shape[0] != 1:
                shape = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise SourceModelError(
                    f"the head must return one (1, C, H, W) tensor, it returned {shape}"
                )
            outs.append(y.float().numpy())
    return np.concatenate(outs)


def _run_tail(tail: torch.nn.Module, bottleneck_nchw: np.ndarray) -> np.ndarray:
    outs = []
    with torch.no_grad():
        for i in range(bottleneck_nchw.shape[0]):
            try:
                y = tail(torch.from_numpy(np.ascontiguousarray(bottleneck_nchw[i : i + 1])))
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SourceModelError(
                    f"the tail does not accept the head's output {list(bottleneck_nchw.shape[1:])}: "
                    f"{first[:300]}"
                ) from None
            if isinstance(y, tuple | list):
                y = y[0]
            outs.append(y.float().reshape(1, -1).numpy())
    return np.concatenate(outs)


def _calibration_set(opts: ConvertOptions, hw: tuple[int, int], warn: Warn) -> ImageSet:
    if opts.calib_dir is not None:
        return load_image_folder(opts.calib_dir, hw, warn, progress=opts.progress)
    return synthetic_images(int(opts.calib_synthetic), hw, seed=opts.seed)


def _resolve_output_range(
    opts: ConvertOptions, sm: HeadSourceManifest | None, sm_name: str
) -> tuple[tuple[float, float] | None, str]:
    """--output-range, else the range training used for its int8 bottleneck, else None."""
    if opts.output_range is not None:
        rng, origin = tuple(float(v) for v in opts.output_range), "--output-range"
    else:
        quant = (sm.extra.get("split") or {}).get("quant") if sm else None
        rng = quant.get("output_range") if isinstance(quant, dict) else None
        if rng is None:
            return None, "calibration"
        if (
            not isinstance(rng, list | tuple)
            or len(rng) != 2
            or not all(isinstance(v, int | float) for v in rng)
        ):
            raise SourceModelError(f"{sm_name}: extra.split.quant.output_range must be [lo, hi]")
        rng, origin = (float(rng[0]), float(rng[1])), f"{sm_name} (extra.split.quant)"
    lo, hi = rng
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= 0.0 < hi):
        raise ConversionError(
            f"output range must satisfy lo <= 0 < hi (int8 needs a zero point), got {list(rng)}"
        )
    return (lo, hi), origin


def output_quant_for(lo: float, hi: float) -> tuple[float, int]:
    """int8 (scale, zero_point) covering [lo, hi]: [0, 6] -> (6/255, -128), as training uses."""
    scale = (hi - lo) / 255.0
    return scale, round(-128 - lo / scale)


def _check_tail_pairing(tail_path: Path, model_id: str, sm_name: str) -> None:
    """A tail.json beside the tail must name the same split model as the head's manifest."""
    for cand in (tail_path.with_name(tail_path.name + ".json"), tail_path.with_suffix(".json")):
        if not cand.is_file():
            continue
        try:
            data = json.loads(cand.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        other = data.get("model_id") if isinstance(data, dict) else None
        if isinstance(other, str) and other != model_id:
            raise SourceModelError(
                f"head and tail belong to different split models: model_id {model_id} "
                f"({sm_name}) vs {other} ({cand.name})"
            )
        return


def convert_head(opts: ConvertOptions, warn: Warn = _stderr_warn) -> ConvertResult:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    opts.output = Path(opts.output)
    _validate_options(opts)
    src = load_source_model(Path(opts.model))
    found = find_source_manifest(src.path)
    sm_path, sm = found if found else (None, None)
    sm_name = sm_path.name if sm_path else ""
    hw = _resolve_input_hw(opts, src, sm, sm_name, warn)
    mean = tuple(opts.mean or (sm.normalization["mean"] if sm else IMAGENET_MEAN))
    std = tuple(opts.std or (sm.normalization["std"] if sm else IMAGENET_STD))
    if len(mean) != 3 or len(std) != 3:
        raise SourceModelError(f"{sm_name}: normalization needs 3 values (RGB) for mean and std")
    labels = list(sm.labels) if sm else []
    if opts.labels_file:
        labels = read_labels(opts.labels_file)
    out_range, out_range_origin = _resolve_output_range(opts, sm, sm_name)
    tail_src = load_source_model(Path(opts.tail)) if opts.tail else None
    model_id = sm.model_id if sm else src.sha256
    if tail_src is not None and sm is not None:
        _check_tail_pairing(tail_src.path, sm.model_id, sm_name)

    images = _calibration_set(opts, hw, warn)
    calib_idx, hold_idx = split_holdout(images.pixels.shape[0], warn)
    calib_pixels = ensure_full_range(images.pixels[calib_idx])
    hold_pixels = images.pixels[hold_idx]

    wrapped_eager = wrap_for_export(src.module, "eager", mean, std)
    reference = _float_reference(wrapped_eager, hold_pixels, hw)
    bottleneck_chw = list(reference.shape[1:])
    if sm and sm.bottleneck_chw and list(sm.bottleneck_chw) != bottleneck_chw:
        raise InputSizeError(
            f"input size mismatch: at {hw[0]}x{hw[1]} the head outputs {bottleneck_chw} but "
            f"{sm_name} says the bottleneck is {sm.bottleneck_chw}"
        )
    logits_float = None
    if tail_src is not None:  # before the slow part, so a tail/label mismatch fails fast
        logits_float = _run_tail(tail_src.module, reference)
        if labels and logits_float.shape[1] != len(labels):
            raise SourceModelError(
                f"{len(labels)} labels but the tail outputs {logits_float.shape[1]} classes"
            )
    timings["load_and_reference_s"] = time.perf_counter() - t_start

    with tempfile.TemporaryDirectory(prefix="convert-head-") as tmp:
        job = Path(tmp)
        t0 = time.perf_counter()
        wrapped = wrap_for_export(src.module, src.kind, mean, std)
        rewrites = export_onnx(
            wrapped, src.kind, hw, job / "model.onnx", split_convs=opts.split_narrow_convs
        )
        onnx_ops = op_counts(onnx.load(str(job / "model.onnx")))
        timings["onnx_export_s"] = time.perf_counter() - t0
        for name in rewrites.maxpool_left_padded:
            warn(f"{name}: padded max-pool on a possibly negative input is left as is")
        np.save(job / "calib.npy", calib_pixels.astype(np.float32) / np.float32(255.0))
        job_spec: dict = {"float_tflite": opts.float_tflite is not None}
        if out_range is not None:
            scale, zp = output_quant_for(*out_range)
            job_spec["output_quant"] = {"scale": scale, "zero_point": zp}
        (job / "job.json").write_text(json.dumps(job_spec))

        t0 = time.perf_counter()
        worker = run_worker(job, opts.progress)
        timings["tensorflow_s"] = time.perf_counter() - t0
        tflite = job / "head_int8.tflite"

        t0 = time.perf_counter()
        outputs, details = run_probe(tflite, hold_pixels, job)
        timings["probe_s"] = time.perf_counter() - t0
        check_integer_model(details, hw, onnx.load(str(job / "model.onnx")))
        if out_range is not None:
            want_scale, want_zp = output_quant_for(*out_range)
            got = details["output"]
            if (
                not math.isclose(got["scale"], want_scale, rel_tol=1e-6)
                or got["zero_point"] != want_zp
            ):
                raise InvalidModelError(
                    f"output quantisation is ({got['scale']}, {got['zero_point']}), expected "
                    f"({want_scale}, {want_zp}) for output range {list(out_range)}"
                )

        out_spec = details["output"]
        deq = dequantize(outputs, out_spec["scale"], out_spec["zero_point"])
        ref_nhwc = reference.transpose(0, 2, 3, 1)
        if deq.shape != ref_nhwc.shape:
            raise InvalidModelError(
                f"the converted output has shape {list(deq.shape[1:])} (NHWC) but PyTorch gives "
                f"{list(ref_nhwc.shape[1:])}"
            )
        ver = compare(ref_nhwc, deq, out_spec["scale"])
        if tail_src is not None and logits_float is not None:
            logits_q = _run_tail(tail_src.module, np.ascontiguousarray(deq.transpose(0, 3, 1, 2)))
            ver.top1_agreement = top1_agreement(logits_float, logits_q)
            ver.tail_images = int(reference.shape[0])
        if ver.cosine_min < opts.min_cosine:
            raise VerificationError(
                f"verification failed: cosine similarity vs PyTorch is {ver.cosine_min:.4f} "
                f"(min over {ver.n_images} held-out images) < --min-cosine {opts.min_cosine}; "
                "no output written"
            )

        versions = _versions()
        versions.update(worker.get("versions", {}))
        manifest = HeadManifest(
            model_id=model_id,
            input=TensorSpec(
                shape=[1, hw[0], hw[1], 3],
                dtype="uint8",
                layout="NHWC",
                scale=float(details["input"]["scale"]),
                zero_point=int(details["input"]["zero_point"]),
            ),
            output=TensorSpec(
                shape=list(out_spec["shape"]),
                dtype="int8",
                layout="NHWC",
                scale=float(out_spec["scale"]),
                zero_point=int(out_spec["zero_point"]),
            ),
            bottleneck_chw=bottleneck_chw,
            normalization={"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
            codec=dict(sm.codec) if sm else dict(DEFAULT_CODEC),
            labels=labels,
            source_sha256=src.sha256,
            tflite_sha256=sha256_file(tflite),
            extra={
                "source": {
                    "path": src.path.name,
                    "kind": src.kind,
                    "manifest": sm_name or None,
                    "model_id_from": "source manifest" if sm else "sha256 of the model file",
                },
                "normalization_folded": True,
                "output_range": {
                    "range": list(out_range) if out_range else None,
                    "from": out_range_origin,
                },
                "input_pixel_range": [0, 255],
                "split": dict(sm.extra.get("split", {})) if sm else {},
                "source_extra": dict(sm.extra) if sm else {},
                "versions": versions,
                "verification": ver.as_dict(),
                "calibration": {
                    "source": str(opts.calib_dir)
                    if opts.calib_dir
                    else f"synthetic:{opts.calib_synthetic}",
                    "images": len(calib_idx),
                    "held_out": len(hold_idx),
                    "skipped": images.skipped,
                },
                "ops": details["ops"],
                "tensor_dtypes": details["tensor_dtypes"],
                "onnx_ops": onnx_ops,
                "rewrites": {
                    "maxpool_zero_padded": rewrites.maxpool_zero_padded,
                    "narrow_conv_split": rewrites.narrow_conv_split,
                },
                "tflite_bytes": tflite.stat().st_size,
            },
        )
        timings["total_s"] = time.perf_counter() - t_start
        manifest.extra["timings_s"] = {k: round(v, 3) for k, v in timings.items()}

        if opts.float_tflite is not None:
            shutil.copyfile(job / "head_float32.tflite", opts.float_tflite)
        manifest_path = opts.manifest_path or opts.output.with_suffix(".json")
        try:
            install_outputs(tflite, manifest, opts.output, Path(manifest_path))
        except ManifestError as exc:
            raise ConversionError(
                f"internal error: the manifest does not validate: {exc}"
            ) from None
    return ConvertResult(opts.output, Path(manifest_path), manifest, ver, timings)
