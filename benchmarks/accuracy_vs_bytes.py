"""Accuracy vs bytes per frame: naive codec insertion vs compression-aware training (BottleNet Fig. 7).

On Fashion-MNIST (real labelled images) with ``resnet_small``, bottleneck after RB1:

1. **baseline** — the unsplit backbone, trained normally.
2. **plain split** — the bottleneck unit inserted after RB1 (backbone initialised from the
   baseline), trained *without* the codec. Inserting the wire codec into this trained
   model at inference is the **naive** approach.
3. **compression-aware** — the plain split model fine-tuned with the wire codec in the
   forward pass and identity gradients (BottleNet Sec. 2.2). Default (``--aware multi``):
   one model trained with the JPEG quality drawn per batch from the evaluated set, so one
   tail serves every q; ``--aware per-quality`` fine-tunes one model per q as in the paper
   (5x the cost).

For each q ∈ {5, 10, 20, 50, 90}: mean bytes/frame of the real wire payload
(``wire.codecs.FeatureCodec.encode_int8`` on the int8 bottleneck) and top-1 accuracy on
held-out test images, for naive and compression-aware. The budget is a few CPU minutes
(subsets, few epochs); every setting is recorded in the JSON.

Run: ``python -m benchmarks.accuracy_vs_bytes`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from training.bottleneck import SplitNet, split_model
from training.compressor import (
    CodecConfig,
    CompressorLayer,
    RandomChoiceRoundtrip,
    quant_params_for,
    wire_roundtrip,
)
from training.data import build_dataset
from training.models import create_model
from training.trainer import FitConfig, evaluate, fit
from wire.codecs import FeatureCodec
from wire.logjson import get_logger
from wire.quant import quantize_float_to_int8

log = get_logger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "accuracy_vs_bytes"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{NAME}", description=__doc__.split("\n")[0]
    )
    p.add_argument("--fashion-root", default=None)
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument("--test-limit", type=int, default=5000)
    p.add_argument("--baseline-epochs", type=int, default=5)
    p.add_argument("--plain-epochs", type=int, default=4)
    p.add_argument("--aware", choices=("multi", "per-quality"), default="multi")
    p.add_argument("--aware-epochs", type=int, default=3)
    p.add_argument("--aware-limit", type=int, default=None, help="train images per aware fine-tune")
    p.add_argument("--aware-lr", type=float, default=1e-3)
    p.add_argument("--qualities", type=int, nargs="+", default=[5, 10, 20, 50, 90])
    p.add_argument("--after", default="rb1")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="1 is fastest on a crowded 2-core box")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-progress", action="store_true")
    return p


def mean_payload_bytes(net: SplitNet, loader: DataLoader, codec: FeatureCodec, limit: int) -> float:
    """Average size of the real wire payload for the head's bottleneck on test images."""
    net.eval()
    sizes: list[int] = []
    with torch.no_grad():
        for x, _ in loader:
            q = quantize_float_to_int8(net.head(x).numpy(), codec.quant)
            sizes += [len(codec.encode_int8(s, layout="CHW")) for s in q]
            if len(sizes) >= limit:
                break
    return float(np.mean(sizes[:limit]))


def _atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    bundle = build_dataset(
        "fashion-mnist",
        limit_train=args.train_limit,
        limit_val=args.test_limit,
        fashion_root=args.fashion_root,
        seed=args.seed,
    )
    g = torch.Generator().manual_seed(args.seed)
    train = DataLoader(bundle.train, args.batch_size, shuffle=True, generator=g, drop_last=True)
    test = DataLoader(bundle.val, 500)
    progress = not args.no_progress
    timings: dict[str, float] = {}

    # 1. unsplit baseline
    t0 = time.perf_counter()
    baseline = create_model("resnet_small", num_classes=10)
    fit(baseline, train, None, FitConfig(epochs=args.baseline_epochs, progress=progress))
    _, acc_base = evaluate(baseline, test)
    timings["baseline_train_eval_s"] = time.perf_counter() - t0
    log.info("baseline", top1=acc_base)

    # 2. split after RB1, bottleneck trained without the codec
    t0 = time.perf_counter()
    head, tail = split_model(
        baseline,
        after=args.after,
        channels=args.channels,
        stride=args.stride,
        input_size=bundle.input_hw,
        model_name="resnet_small",
    )
    plain = SplitNet(head, tail)
    fit(plain, train, None, FitConfig(epochs=args.plain_epochs, progress=progress))
    _, acc_plain = evaluate(plain, test)
    timings["plain_train_eval_s"] = time.perf_counter() - t0
    spec = plain.spec
    log.info("plain_split", top1=acc_plain, bottleneck_chw=list(spec.bottleneck_chw))

    qp = quant_params_for(spec.out_max, args.bits)
    lossless = {}
    for name in ("raw", "png", "zstd"):
        fc = FeatureCodec(spec.bottleneck_chw, qp, name)
        lossless[name] = mean_payload_bytes(plain, test, fc, 1000)
    plain.compressor = CompressorLayer(
        wire_roundtrip(spec.bottleneck_chw, spec.out_max, CodecConfig("raw", args.bits, {}))
    )
    _, acc_plain_quant = evaluate(plain, test)
    plain.compressor = torch.nn.Identity()

    limit = args.aware_limit or len(bundle.train)
    perm = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(args.seed + 1))
    aware_subset = Subset(bundle.train, perm[:limit].tolist())
    aware_loader = DataLoader(
        aware_subset,
        args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        drop_last=True,
    )

    def roundtrip_at(q: int):
        return wire_roundtrip(
            spec.bottleneck_chw, spec.out_max, CodecConfig("jpeg", args.bits, {"quality": q})
        )

    def train_aware(roundtrip) -> SplitNet:
        aware = copy.deepcopy(plain)
        aware.compressor = CompressorLayer(roundtrip)
        fit(
            aware,
            aware_loader,
            None,
            FitConfig(epochs=args.aware_epochs, lr=args.aware_lr, progress=progress),
        )
        return aware

    shared_aware = None
    if args.aware == "multi":
        t0 = time.perf_counter()
        shared_aware = train_aware(
            RandomChoiceRoundtrip([roundtrip_at(q) for q in args.qualities], seed=args.seed)
        )
        timings["aware_multi_train_s"] = time.perf_counter() - t0
    rows = []
    for q in args.qualities:
        t0 = time.perf_counter()
        fc = FeatureCodec(spec.bottleneck_chw, qp, "jpeg", {"quality": q})
        roundtrip = roundtrip_at(q)
        naive = copy.deepcopy(plain)
        naive.compressor = CompressorLayer(roundtrip)
        _, acc_naive = evaluate(naive, test)
        bytes_naive = mean_payload_bytes(naive, test, fc, 1000)
        aware = shared_aware if shared_aware is not None else train_aware(roundtrip)
        aware.compressor = CompressorLayer(roundtrip)
        _, acc_aware = evaluate(aware, test)
        bytes_aware = mean_payload_bytes(aware, test, fc, 1000)
        row = {
            "quality": q,
            "naive": {"top1": acc_naive, "bytes_per_frame": bytes_naive},
            "aware": {"top1": acc_aware, "bytes_per_frame": bytes_aware},
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        log.info("quality", **row)

    at20 = next((r for r in rows if r["quality"] == 20), None)
    result = {
        "benchmark": NAME,
        "dataset": {
            **bundle.describe(),
            "licence": "MIT (Fashion-MNIST, Debian dataset-fashion-mnist)",
        },
        "model": "resnet_small",
        "split": spec.to_dict(),
        "codec": {
            "name": "jpeg",
            "bits": args.bits,
            "quant": {"scale": qp.scale, "zero_point": qp.zero_point},
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "baseline_top1": acc_base,
        "plain_split_top1_no_codec": acc_plain,
        "plain_split_top1_quantized_only": acc_plain_quant,
        "lossless_bytes_per_frame": lossless,
        "input_image_bytes_uint8": 28 * 28,
        "rows": rows,
        "epochs_seen": {
            "baseline": args.baseline_epochs,
            "naive": args.baseline_epochs + args.plain_epochs,
            "aware": args.baseline_epochs + args.plain_epochs + args.aware_epochs,
            "note": "split models start from the trained baseline, so they saw more steps",
        },
        "target_q20": None
        if at20 is None
        else {
            "aware_gap_points": 100 * (acc_base - at20["aware"]["top1"]),
            "naive_gap_points": 100 * (acc_base - at20["naive"]["top1"]),
            "aware_within_2_points": 100 * (acc_base - at20["aware"]["top1"]) <= 2.0,
        },
        "timings_s": {**timings, "total": time.perf_counter() - t_start},
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
        },
        "command": "python -m benchmarks.accuracy_vs_bytes " + " ".join(sys.argv[1:]),
    }
    return result


def write_markdown(result: dict, path: Path) -> None:
    s = result["split"]
    st = result["settings"]
    lines = [
        "# Accuracy vs bytes/frame: naive vs compression-aware (BottleNet Fig. 7 style)",
        "",
        f"Fashion-MNIST ({result['dataset']['train_size']} train / {result['dataset']['val_size']} "
        f"test images), `resnet_small`, bottleneck after {s['after']}: "
        f"{'×'.join(map(str, s['feature_chw']))} → {'×'.join(map(str, s['bottleneck_chw']))} "
        f"(C'={s['channels']}, s={s['stride']}), int8 scale {result['codec']['quant']['scale']:.5f}, "
        f"zero point {result['codec']['quant']['zero_point']}, {result['codec']['bits']}-bit, JPEG.",
        "",
        f"Training: baseline {st['baseline_epochs']} epochs; split (backbone from the baseline) "
        f"{st['plain_epochs']} epochs without the codec = the naive model; compression-aware = "
        f"that model fine-tuned {st['aware_epochs']} epochs with the wire codec in the loop "
        + (
            "(one model, JPEG quality drawn per batch from the evaluated set)."
            if st["aware"] == "multi"
            else "(one model per quality)."
        ),
        "",
        f"- Unsplit baseline top-1: **{100 * result['baseline_top1']:.2f}%**",
        f"- Split, no codec: {100 * result['plain_split_top1_no_codec']:.2f}%; "
        f"quantized only (raw codec): {100 * result['plain_split_top1_quantized_only']:.2f}%",
        "- Lossless payloads (bytes/frame): "
        + ", ".join(f"{k} {v:.0f}" for k, v in result["lossless_bytes_per_frame"].items())
        + f"; the 28×28 uint8 input image is {result['input_image_bytes_uint8']} bytes.",
        "",
        "| JPEG q | naive bytes | naive top-1 | aware bytes | aware top-1 | aware − baseline (pts) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['quality']} | {r['naive']['bytes_per_frame']:.0f} | {100 * r['naive']['top1']:.2f}% "
            f"| {r['aware']['bytes_per_frame']:.0f} | {100 * r['aware']['top1']:.2f}% "
            f"| {100 * (r['aware']['top1'] - result['baseline_top1']):+.2f} |"
        )
    t = result.get("target_q20")
    if t:
        lines += [
            "",
            f"Target at q=20: aware within 2 points of the baseline → "
            f"{'met' if t['aware_within_2_points'] else 'NOT met'} "
            f"(aware gap {t['aware_gap_points']:.2f} pts, naive gap {t['naive_gap_points']:.2f} pts).",
        ]
        at20 = next(r for r in result["rows"] if r["quality"] == 20)
        split_only = result["plain_split_top1_no_codec"]
        lines += [
            f"Of the aware gap, {100 * (result['baseline_top1'] - split_only):.2f} pts is the "
            "bottleneck itself (split model without any codec) and "
            f"{100 * (split_only - at20['aware']['top1']):.2f} pts the JPEG codec; naive "
            f"insertion loses {100 * (split_only - at20['naive']['top1']):.2f} pts to the codec.",
        ]
    lines += [
        "",
        f"Run: `{result['command']}` — total {result['timings_s']['total']:.0f} s "
        f"with {result['environment']['threads']} torch thread(s) on a shared 2-core machine.",
        "",
    ]
    _atomic_write(path, "\n".join(lines))


def write_plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("naive", "o--"), ("aware", "s-")):
        xs = [r[key]["bytes_per_frame"] for r in rows]
        ys = [100 * r[key]["top1"] for r in rows]
        ax1.plot(xs, ys, style, label=key if key == "naive" else "compression-aware")
        for r, x, y in zip(rows, xs, ys, strict=True):
            ax1.annotate(
                f"q{r['quality']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
        ax2.plot(
            [r["quality"] for r in rows],
            [100 * (result["baseline_top1"] - r[key]["top1"]) for r in rows],
            style,
            label=key if key == "naive" else "compression-aware",
        )
    ax1.axhline(100 * result["baseline_top1"], color="gray", lw=1, label="unsplit baseline")
    ax1.set_xlabel("bytes / frame (wire payload)")
    ax1.set_ylabel("top-1 accuracy (%)")
    ax1.legend()
    ax2.set_xscale("log")
    ax2.set_xlabel("JPEG quality")
    ax2.set_ylabel("accuracy loss vs baseline (points)")
    ax2.axhline(2.0, color="gray", lw=1, ls=":")
    ax2.legend()
    s = result["split"]
    fig.suptitle(
        f"Fashion-MNIST, resnet_small, bottleneck after {s['after']} "
        f"({'×'.join(map(str, s['bottleneck_chw']))}), JPEG"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"{NAME}: error: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    _atomic_write(out / f"{NAME}.json", json.dumps(result, indent=2) + "\n")
    write_markdown(result, out / f"{NAME}.md")
    write_plot(result, out / f"{NAME}.png")
    print((out / f"{NAME}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
