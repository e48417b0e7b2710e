"""Head latency for the Algorithm 1 search: the int8 TFLite head when the converter runs here.

Why int8 TFLite: the head runs on the board as the converter's full-int8 TFLite model, so
its latency -- not the float PyTorch module's -- is what the partition choice should be
costed with (BottleNet Sec. 2.3 profiles the deployed head). Each candidate's exported
``head.pt`` goes through the project's own ``converter.pipeline.convert_head`` (calibrated on
real training images, verified against PyTorch) and the result is timed with the device's
own loader, ``device.head.Head`` (ai-edge-litert), at batch 1. The torch head is timed in
the same loop, interleaved run by run, so the two numbers share the same CPU noise.

Why a fallback: the converter needs tensorflow + onnx2tf, which a training-only machine
may lack, and a conversion can fail (an op without an int8 kernel, a verification below
``--min-cosine``). Then the torch number is used and the reason is recorded, never hidden.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKEND_CHOICES = ("auto", "tflite", "torch")
TFLITE = "tflite-int8"
TORCH = "torch-cpu"
WARMUP_RUNS = 5
# What convert_head needs in this process or in its TensorFlow worker subprocess.
CONVERTER_MODULES = ("converter", "onnx", "tensorflow", "onnx2tf", "ai_edge_litert")


def converter_missing() -> str | None:
    """Why the int8 route cannot run here, or None when every piece is importable.

    ``find_spec`` looks the packages up without importing them: tensorflow is heavy and
    the converter deliberately runs it in a worker subprocess, not in the search process.
    """
    for name in CONVERTER_MODULES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError) as exc:
            return f"{name} is not importable ({exc})"
        if spec is None:
            return f"{name} is not installed"
    return None


def calibration_images(dataset, mean, std, n: int, seed: int) -> np.ndarray:
    """``n`` seeded dataset images back as uint8 (n, H, W, 3): what the board's camera feeds.

    The training datasets serve normalised float tensors; inverting the normalisation gives
    back the source pixels exactly (Fashion-MNIST's grayscale arrives as 3 equal channels,
    which is also what the converter's ``convert("RGB")`` makes of a grayscale file).
    """
    if n < 1:
        raise ValueError(f"--calib-images must be >= 1, got {n}")
    size = len(dataset)
    idx = np.random.default_rng(seed).permutation(size)[: min(n, size)]
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    out = []
    for i in sorted(int(v) for v in idx):
        x = dataset[i][0].numpy().astype(np.float32)
        px = np.clip(np.rint((x * s + m) * 255.0), 0, 255).astype(np.uint8)
        out.append(px.transpose(1, 2, 0))
    return np.stack(out)


def write_calibration_folder(pixels: np.ndarray, folder: Path) -> Path:
    """PNG files the converter's ``--calib DIR`` route reads (old ones from a rerun removed)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("calib-*.png"):
        old.unlink()
    for i, px in enumerate(pixels):
        Image.fromarray(px, "RGB").save(folder / f"calib-{i:04d}.png")
    return folder


@dataclass(frozen=True)
class Conversion:
    """Outcome of converting one candidate's head: the files, or why there are none."""

    tflite: Path | None
    manifest: Path | None
    error: str | None
    seconds: float
    cosine_min: float | None = None
    top1_agreement: float | None = None
    tflite_bytes: int | None = None

    def as_dict(self) -> dict:
        return {
            "ok": self.error is None,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "tflite": self.tflite.name if self.tflite else None,
            "manifest": self.manifest.name if self.manifest else None,
            "cosine_min": self.cosine_min,
            "top1_agreement": self.top1_agreement,
            "tflite_bytes": self.tflite_bytes,
        }


def convert_candidate(
    export_dir: Path, calib_dir: Path, min_cosine: float, progress: bool
) -> Conversion:
    """``head.pt`` (+ ``head.pt.json``) -> ``head.tflite`` + ``head.json`` beside it.

    Only the converter's own failures (``ConversionError``: unsupported op, verification
    below ``min_cosine``, toolchain crash) become a recorded error; anything else is a bug
    and propagates. A stale ``head.tflite`` from an earlier run is removed first, so a failed
    conversion never leaves a head that belongs to other weights.
    """
    from converter.errors import ConversionError
    from converter.pipeline import ConvertOptions, convert_head

    tflite, manifest = export_dir / "head.tflite", export_dir / "head.json"
    for stale in (tflite, manifest):
        stale.unlink(missing_ok=True)
    opts = ConvertOptions(
        model=export_dir / "head.pt",
        output=tflite,
        calib_dir=calib_dir,
        tail=export_dir / "tail.pt",
        min_cosine=min_cosine,
        progress=progress,
    )
    t0 = time.perf_counter()
    try:
        res = convert_head(opts, warn=lambda msg: None)
    except ConversionError as exc:
        name = type(exc).__name__
        return Conversion(None, None, f"{name}: {exc}", time.perf_counter() - t0)
    ver = res.verification
    return Conversion(
        res.tflite_path,
        res.manifest_path,
        None,
        time.perf_counter() - t0,
        cosine_min=round(float(ver.cosine_min), 5),
        top1_agreement=ver.top1_agreement,
        tflite_bytes=int(res.manifest.extra["tflite_bytes"]),
    )


@dataclass(frozen=True)
class HeadTiming:
    """Median batch-1 head latency per backend (ms); ``tflite_ms`` None when not timed."""

    torch_ms: float
    tflite_ms: float | None
    runs: int
    threads: int
    error: str | None = None  # why the TFLite head could not be timed


def _torch_runner(head, pixels: np.ndarray, mean, std, threads: int) -> Callable[[], None]:
    import torch

    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    x = ((x - m) / s).contiguous()
    head.eval()

    def run() -> None:
        with torch.inference_mode():
            head(x)

    return run


def time_head(
    head,
    pixels: np.ndarray,
    mean,
    std,
    conversion: Conversion | None,
    runs: int,
    threads: int,
) -> HeadTiming:
    """Time the torch head and (if converted) the int8 TFLite head, interleaved run by run.

    ``pixels``: one uint8 (1, H, W, 3) frame; the torch head gets it normalised as in
    training. Both run at ``threads`` threads, so the ratio compares backends, not thread
    counts; torch's setting is restored afterwards (training uses its own).
    """
    import torch

    if runs < 1:
        raise ValueError(f"--latency-runs must be >= 1, got {runs}")
    if threads < 1:
        raise ValueError(f"--latency-threads must be >= 1, got {threads}")
    runners: dict[str, Callable[[], None]] = {
        "torch": _torch_runner(head, pixels, mean, std, threads)
    }
    error = None
    if conversion is not None and conversion.tflite is not None:
        from device.head import Head, HeadError

        try:
            tfl = Head("search", conversion.tflite, conversion.manifest, num_threads=threads)
        except HeadError as exc:
            error = f"HeadError: {exc}"
        else:
            frame = np.ascontiguousarray(pixels[:1])
            runners["tflite"] = lambda: tfl.run(frame)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for run in runners.values():  # warm-up: oneDNN primitive caches, XNNPACK packing
            for _ in range(WARMUP_RUNS):
                run()
        samples: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(runs):
            for name, run in runners.items():
                t0 = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old_threads)
    tfl_ms = statistics.median(samples["tflite"]) if "tflite" in samples else None
    return HeadTiming(statistics.median(samples["torch"]), tfl_ms, runs, threads, error)


def overall_backend(
    requested: str, missing: str | None, failures: dict[str, str]
) -> tuple[str, str]:
    """(backend the costs use, why) for the whole search.

    One backend for every candidate: the selection compares head latencies across
    candidates, and an int8 number next to a float one would bias it. So under ``auto`` a
    single failed conversion sends every candidate to torch (the failure is named).
    """
    if requested not in BACKEND_CHOICES:
        raise ValueError(f"--latency-backend must be one of {BACKEND_CHOICES}, got {requested!r}")
    if requested == "torch":
        return TORCH, "--latency-backend torch"
    if missing is not None:
        return TORCH, f"converter unavailable: {missing}"
    if failures:
        named = "; ".join(f"{k}: {v}" for k, v in failures.items())
        return (
            TORCH,
            f"int8 conversion failed for {len(failures)} candidate(s), so torch for all: {named}",
        )
    return TFLITE, "every candidate's head converted to int8 TFLite and timed with ai-edge-litert"
