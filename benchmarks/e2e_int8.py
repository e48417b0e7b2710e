"""The whole EfficientNet-Lite0 teacher as a full-int8 TFLite model on the device side: the
``local-int8`` row of the e2e benchmark (issue: "also int8 full model if the converter
handles it").

Why the project's own ``convert-head`` and not a separate TFLite path: it is the route the
split head takes (same ONNX rewrites, same calibration images, same uint8-pixel input with
the normalisation folded in, same verification against PyTorch), so the int8 full model and
the int8 head differ only in where the network stops.

``convert-head`` wants a model that returns one (1, C, H, W) tensor, and pins a fixed output
quantisation (``--output-range``) only when the last op can requantise (conv, FC, ...), not
after a RESHAPE. So the teacher is exported as :class:`LogitsMap`: the same layers, with the
final ``Linear`` applied as the identical 1×1 conv on the pooled (1, 1280, 1, 1) map. Its
output is the logits as a (1, 1000, 1, 1) map (int8 NHWC (1, 1, 1, 1000) after conversion);
no converter change is needed. The export is checked against the teacher before converting.

The output range comes from the float logits on the calibration photos (never the 20
evaluation photos), padded by :data:`RANGE_PAD` of its span on each side: ImageNet photos
are classified more confidently than the calibration scenes, and a clipped top logit could
tie with the runner-up.

Re-runs are idempotent: the converted model is cached under the e2e work folder with a key
over the teacher's weights, the calibration photos and this recipe (a fresh TorchScript
export is not byte-identical, so its file hash cannot be the key).

The device-side run (:func:`run_device`) is a separate process that imports neither torch
nor tensorflow, and runs the model through :class:`device.head.Head` (ai-edge-litert, the
daemon's own loader and timing) after the daemon's 224² preprocess.

    python -m benchmarks.e2e_int8 convert --work DIR --calib DIR
    python -m benchmarks.e2e_int8 run --model M.tflite --images list.json --threads 2 --out rows.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wire.atomicfile import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "logits-map/1"  # bump when the export or conversion recipe changes (cache key)
RANGE_PAD = 0.25  # of the calibration logits' span, added below and above
INPUT_HW = (224, 224)
# splitfit-device's [[heads]] num_threads in the config the benchmark runs the split with
# (benchmarks.demo.write_device_config); the int8 full model gets the same threads.
DEVICE_THREADS = 2
MODEL_NAME = "teacher_int8"


class Int8Error(RuntimeError):
    """The full model could not be converted or run; the message says which step."""


@dataclass(frozen=True)
class Int8Teacher:
    """The converted model and where its numbers came from (recorded in e2e.json)."""

    tflite: Path
    manifest: Path
    key: str
    output_range: tuple[float, float]
    calib_logit_range: tuple[float, float]
    converted_now: bool

    def describe(self) -> dict:
        m = json.loads(self.manifest.read_text())
        extra = m.get("extra", {})
        return {
            "model": str(self.tflite.name),
            "converter": "convert-head (the split head's route), TorchScript LogitsMap export",
            "output_range": list(self.output_range),
            "calib_logit_range": list(self.calib_logit_range),
            "output_quant": {
                "scale": m["output"]["scale"],
                "zero_point": m["output"]["zero_point"],
            },
            "tflite_bytes": extra.get("tflite_bytes"),
            "verification": extra.get("verification"),
            "calibration": extra.get("calibration"),
            "cache_key": self.key,
        }


# --------------------------------------------------------------------------------------
# export (torch side; the benchmark's own process)


def logits_map(model):
    """``model`` (a SplittableBackbone) with its final Linear as a 1×1 conv on the pooled map.

    Same weights, same arithmetic: pooled (1, C, 1, 1) features times W plus b is the Linear.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    cls = model.classifier_module()
    fc = cls.fc
    if not isinstance(fc, nn.Linear):
        raise Int8Error(f"the classifier ends in {type(fc).__name__}, not a Linear")

    class LogitsMap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(*[s.module for s in model.segments()])
            self.pre = cls.pre
            self.fc = nn.Conv2d(fc.in_features, fc.out_features, 1)
            with torch.no_grad():
                self.fc.weight.copy_(fc.weight[:, :, None, None])
                self.fc.bias.copy_(fc.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(F.adaptive_avg_pool2d(self.pre(self.body(x)), 1))

    return LogitsMap().eval()


def _normalised(pixels: np.ndarray, mean: float, std: float):
    import torch

    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - mean) / std


def export_teacher(model, pixels: np.ndarray, mean: float, std: float, path: Path) -> None:
    """Trace :func:`logits_map` at 224² and check it against the teacher on ``pixels``."""
    import warnings

    import torch

    wrapped = logits_map(model)
    x = _normalised(pixels, mean, std)
    with torch.inference_mode():
        want = model(x)
        got = wrapped(x).flatten(1)
    err = float((want - got).abs().max())
    if err > 1e-3:
        raise Int8Error(f"the LogitsMap export differs from the teacher by {err:.3g}")
    with warnings.catch_warnings():  # "converting a tensor to int" in SAME padding: 224² fixed
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapped, torch.zeros(1, 3, *INPUT_HW), check_trace=False)
    tmp = path.with_suffix(".tmp.pt")
    traced.save(str(tmp))
    tmp.replace(path)


def padded_range(lo: float, hi: float, pad: float = RANGE_PAD) -> tuple[float, float]:
    """[lo, hi] widened by ``pad``·span each side, and straddling 0 (int8 needs a zero point)."""
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise Int8Error(f"calibration logits span [{lo}, {hi}]: not a usable range")
    span = hi - lo
    return (min(lo - pad * span, -pad * span), max(hi + pad * span, pad * span))


def cache_key(model, calib_files: list[Path], mean: float, std: float) -> str:
    """What the converted model depends on: weights, calibration photos, normalisation, recipe."""
    h = hashlib.sha256(f"{RECIPE}|{mean!r}|{std!r}|{RANGE_PAD!r}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for p in calib_files:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def ensure_int8_teacher(
    work: Path, calib: Path, *, python: str = sys.executable, labels: list[str] | None = None
) -> Int8Teacher:
    """The cached full-int8 teacher under ``work/full-int8``, converting only when stale.

    ``labels`` (the class names, index = class id) go into the manifest, so a daemon running
    it as a ``local`` partition answers with the names the folder camera scores against;
    without them a cached model is reused whatever labels it has (scored by class id)."""
    from benchmarks.e2e_cloud import MEAN, STD, load_teacher
    from converter.images import load_image_folder

    out = work / "full-int8"
    out.mkdir(parents=True, exist_ok=True)
    tflite, manifest, keyfile = (
        out / f"{MODEL_NAME}.tflite",
        out / f"{MODEL_NAME}.json",
        out / "key.json",
    )
    model = load_teacher()
    files = sorted(p for p in calib.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise Int8Error(f"no calibration photos in {calib}")
    key = cache_key(model, files, MEAN, STD)
    labels_sha = (
        hashlib.sha256(json.dumps(labels).encode()).hexdigest() if labels is not None else None
    )
    if tflite.is_file() and manifest.is_file() and keyfile.is_file():
        rec = json.loads(keyfile.read_text())
        if rec.get("key") == key and (labels is None or rec.get("labels_sha256") == labels_sha):
            print(f"  int8 full model up to date: {tflite}", flush=True)
            return Int8Teacher(tflite, manifest, key, tuple(rec["output_range"]),
                               tuple(rec["calib_logit_range"]), converted_now=False)  # fmt: skip
    images = load_image_folder(calib, INPUT_HW, lambda m: print(f"  warning: {m}"), progress=False)
    import torch

    with torch.inference_mode():
        logits = model(_normalised(images.pixels, MEAN, STD))
    calib_range = (float(logits.min()), float(logits.max()))
    out_range = padded_range(*calib_range)
    source = out / f"{MODEL_NAME}.pt"
    export_teacher(model, images.pixels[:2], MEAN, STD, source)
    keyfile.unlink(missing_ok=True)  # a half-done conversion must not look current
    cmd = [
        python, "-m", "converter.cli", str(source), "-o", str(tflite), "--calib", str(calib),
        "--input-size", *map(str, INPUT_HW), "--mean", *[repr(MEAN)] * 3, "--std", *[repr(STD)] * 3,
        "--output-range", repr(out_range[0]), repr(out_range[1]), "--no-progress",
    ]  # fmt: skip
    if labels is not None:
        labels_file = out / "labels.json"
        write_json_atomic(labels_file, list(labels))
        cmd += ["--labels", str(labels_file)]
    print("  $ convert-head " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise Int8Error(
            f"convert-head failed on the full model: {lines[-1] if lines else proc.returncode}"
        )
    print("  " + proc.stdout.strip().splitlines()[-1], flush=True)
    write_json_atomic(keyfile, {"key": key, "recipe": RECIPE, "output_range": list(out_range),
                                "calib_logit_range": list(calib_range),
                                "labels_sha256": labels_sha})  # fmt: skip
    return Int8Teacher(tflite, manifest, key, out_range, calib_range, converted_now=True)


# --------------------------------------------------------------------------------------
# the device-side run (no torch, no tensorflow in this process)


def run_device(images: list[dict], tflite: Path, manifest: Path, threads: int) -> list[dict]:
    """Per photo: the daemon's 224² preprocess, then the int8 model via device.head.Head."""
    from PIL import Image

    from device.head import Head
    from hardware.preprocess import preprocess

    head = Head(MODEL_NAME, tflite, manifest, num_threads=threads)
    head.run(np.zeros((1, *head.input_hw, 3), np.uint8))  # first invoke pays XNNPACK packing
    rows = []
    for item in images:
        with Image.open(item["path"]) as img:
            frame = np.asarray(img.convert("RGB"))  # the camera's work, not the device's
        t0 = time.perf_counter()
        x = preprocess(frame, size=head.input_hw)
        pre_ms = (time.perf_counter() - t0) * 1e3
        out = head.run(x)
        logits = out.tensor.reshape(-1)  # int8 codes; argmax needs no dequantisation
        rows.append({**item, "top1": int(np.argmax(logits)), "preprocess_ms": pre_ms,
                     "model_ms": out.head_ms, "latency_ms": pre_ms + out.head_ms, "bytes": 0,
                     "threads": threads})  # fmt: skip
    return rows


def run_device_process(images_json: Path, teacher: Int8Teacher, threads: int, out: Path,
                       timeout: float = 300.0) -> list[dict]:  # fmt: skip
    """:func:`run_device` in its own process, as the board's daemon would host it."""
    cmd = [sys.executable, "-m", "benchmarks.e2e_int8", "run", "--model", str(teacher.tflite),
           "--manifest", str(teacher.manifest), "--images", str(images_json),
           "--threads", str(threads), "--out", str(out)]  # fmt: skip
    out.unlink(missing_ok=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise Int8Error(f"local-int8 run failed: {lines[-1] if lines else proc.returncode}")
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.e2e_int8")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="convert (or reuse) the full-int8 teacher")
    c.add_argument("--work", required=True, type=Path)
    c.add_argument("--calib", required=True, type=Path)
    r = sub.add_parser("run", help="time the int8 model on photos (device side)")
    r.add_argument("--model", required=True, type=Path)
    r.add_argument("--manifest", type=Path, help="default: MODEL with .json")
    r.add_argument("--images", required=True, type=Path)
    r.add_argument("--threads", type=int, default=DEVICE_THREADS)
    r.add_argument("--out", required=True, type=Path)
    a = p.parse_args(argv)
    try:
        if a.cmd == "convert":
            t = ensure_int8_teacher(a.work.resolve(), a.calib.resolve())
            print(json.dumps(t.describe()))
            return 0
        if a.threads < 1:
            raise Int8Error(f"--threads must be >= 1, got {a.threads}")
        images = json.loads(a.images.read_text())
        rows = run_device(images, a.model, a.manifest or a.model.with_suffix(".json"), a.threads)
        write_text_atomic(a.out, "".join(json.dumps(row) + "\n" for row in rows))
        return 0
    except (Int8Error, OSError, ValueError, RuntimeError) as exc:
        print(f"e2e_int8: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
