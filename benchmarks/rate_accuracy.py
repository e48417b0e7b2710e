"""Rate–accuracy: a rate-trained bottleneck vs n-bit + zstd on the same cut, in one PNG.

Run: ``nice -n 10 python -m benchmarks.rate_accuracy`` ->
``benchmarks/results/rate_accuracy.{json,md,png}``.

Why: issue #21's target is, at equal held-out top-1 (±0.5 pt), >= 2x fewer bytes/frame for
the bottleneck trained with a rate term (``training.entropy_model``, coded on the wire by
``rans`` / ``zstd_dict`` with the exported tables) than for the best fixed n-bit quantizer
followed by zstd on the same cut (BottleNet-style compression-aware training at each n).

Setup (what trains in minutes on this shared CPU): Fashion-MNIST (``vendor/fashion-mnist``),
``resnet_small`` split after rb1 with a C'-channel, stride-2 bottleneck. Every model is
trained by ``training.pipeline.run_train`` — the command users run — with the same seed,
data and epochs; the baseline at each n with the n-bit quantizer in the loop, the
rate-trained ones with n-bit codes (``--rate-bits``) and loss = CE + λ·bytes. The
comparison at equal top-1 interpolates the baseline curve (log bytes, linear in top-1)
between the bit depths around each rate-trained point. All are exported, and the
evaluation reads the exported manifests' tables: each of the test images goes through the
real wire path (head -> int8 -> FeatureCodec.encode_int8 -> bytes -> decode_float -> tail),
so bytes are payload bytes and top-1 is what the server would answer.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness.results import write_results
from training.compressor import CodecConfig, quant_params_for
from training.pipeline import TrainJob, run_train
from wire.atomicfile import write_atomic, write_text_atomic
from wire.codecs import FeatureCodec
from wire.manifest import load_tail_manifest
from wire.quant import quantize_float_to_int8

RESULTS = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def wire_eval(
    head: Callable, tail: Callable, val: Any, out_dir: Path, codec: str, params: dict, bits: int
) -> dict[str, Any]:
    """Payload bytes, top-1 and codec times over the validation set through the real codec.

    The codec is built from the exported tail.json (its shape, quantization and tables), as
    the server builds it; ``head``/``tail`` are the trained modules or the exported programs.
    """
    manifest = load_tail_manifest(out_dir / "tail.json")
    qp = quant_params_for(float(manifest.split["out_max"]), bits)
    chw = tuple(manifest.input_chw)
    fc = FeatureCodec(chw, qp, codec, params, tables=manifest.codec_tables())
    sizes, correct, n = [], 0, 0
    enc_s = dec_s = 0.0
    for x, y in torch.utils.data.DataLoader(val, batch_size=256):
        q = quantize_float_to_int8(head(x).numpy(), qp)
        feats = []
        for qi in q:
            t = time.perf_counter()
            payload = fc.encode_int8(qi, layout="CHW")
            t2 = time.perf_counter()
            feats.append(fc.decode_float(payload))
            dec_s += time.perf_counter() - t2
            enc_s += t2 - t
            sizes.append(len(payload))
        logits = tail(torch.from_numpy(np.stack(feats)))
        correct += int((logits.argmax(1) == y).sum())
        n += len(y)
    return {
        "codec": codec,
        "params": {k: v for k, v in fc.params.items() if k != "tables"},
        "bytes_mean": float(np.mean(sizes)),
        "bytes_max": int(np.max(sizes)),
        "top1": correct / n,
        "encode_ms_mean": enc_s / n * 1e3,
        "decode_ms_mean": dec_s / n * 1e3,
        "frames": n,
    }


def trained(
    args: argparse.Namespace, job: TrainJob, out: Path
) -> tuple[Callable, Callable, Any, float]:
    """(head, tail, validation set, train seconds): trained now, or (``--eval-only``) the
    programs a previous run exported to ``out``."""
    if args.eval_only:
        import warnings

        from training.data import build_dataset

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            head = torch.jit.load(str(out / "head.pt")).eval()
            tail = torch.jit.load(str(out / "tail.pt")).eval()
        bundle = build_dataset(
            job.data, limit_train=job.limit_train, limit_val=job.limit_val, seed=job.seed
        )
        metrics = json.loads((out / "metrics.json").read_text())
        return head, tail, bundle.val, float(metrics["train_seconds_this_session"])
    t0 = time.perf_counter()
    res = run_train(job, out)
    net = res.net.to("cpu").eval()
    return net.head, net.tail, res.bundle.val, time.perf_counter() - t0


def base_job(args: argparse.Namespace, **kw: Any) -> TrainJob:
    return TrainJob(
        data="fashion-mnist",
        model="resnet_small",
        after="rb1",
        channels=args.channels,
        stride=2,
        epochs=args.epochs,
        batch_size=128,
        lr=2e-3,
        limit_train=args.limit_train,
        limit_val=args.limit_val,
        seed=0,
        threads=args.threads,
        progress=False,
        device="cpu",
        **kw,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    work = Path(args.work)
    rows: list[dict[str, Any]] = []
    for bits in args.baseline_bits:
        out = work / f"nbit{bits}"
        job = base_job(args, codec=CodecConfig("zstd", bits, {"level": 3}))
        head, tail, val, train_s = trained(args, job, out)
        row = wire_eval(head, tail, val, out, "zstd", {"level": 3}, bits)
        rows.append(
            {"family": "n-bit + zstd", "bits": bits, "lambda": None, "train_s": train_s, **row}
        )
        print(json.dumps(rows[-1]), flush=True)
    for bits in args.rate_bits:
        for lam in args.lambdas:
            out = work / f"rate{bits}b{lam:g}"
            codec_cfg = CodecConfig("zstd_dict", bits, {"level": 3})
            job = base_job(args, codec=codec_cfg, rate_weight=lam)
            head, tail, val, train_s = trained(args, job, out)
            for codec, params in (("zstd_dict", {"level": 3}), ("rans", {"lanes": args.lanes})):
                row = wire_eval(head, tail, val, out, codec, params, bits)
                family = f"rate-trained {bits}-bit + {codec}"
                rows.append(
                    {"family": family, "bits": bits, "lambda": lam, "train_s": train_s, **row}
                )
                print(json.dumps(rows[-1]), flush=True)
    return {
        "rows": rows,
        "verdict": verdict(rows),
        "meta": {
            "data": "fashion-mnist",
            "model": "resnet_small after rb1, stride 2",
            "channels": args.channels,
            "epochs": args.epochs,
            "limit_train": args.limit_train,
            "limit_val": args.limit_val,
            "threads": args.threads,
            "eval_only": args.eval_only,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "loadavg_before": list(load_before),
            "loadavg_after": list(os.getloadavg()),
            "note": "shared 2-core machine, ~8 other agents (long trainings included), run at "
            "nice 10: train_s and encode_ms are inflated by load",
        },
    }


def baseline_bytes_at(base: list[dict[str, Any]], top1: float) -> float | None:
    """The baseline curve's bytes at ``top1``: log-bytes interpolated between the two
    baseline settings that bracket it (None outside the curve's accuracy range).

    The curve is the baseline's Pareto front: a setting that another one beats on both
    bytes and top-1 (8 bits vs 4 here) is no option anyone would pick, and leaving it in
    would make the curve bend back and overstate the bytes at a top-1 near it.
    """
    front = [
        b
        for b in base
        if not any(
            o is not b and o["top1"] >= b["top1"] and o["bytes_mean"] <= b["bytes_mean"]
            for o in base
        )
    ]
    pts = sorted((b["top1"], math.log(b["bytes_mean"])) for b in front)
    for (a0, l0), (a1, l1) in itertools.pairwise(pts):
        if a0 <= top1 <= a1 and a1 > a0:
            return math.exp(l0 + (l1 - l0) * (top1 - a0) / (a1 - a0))
    return None


def verdict(rows: list[dict[str, Any]], tol: float = 0.005) -> dict[str, Any]:
    """Each rate-trained point against n-bit + zstd at the same top-1.

    ``within_tol``: the cheapest baseline setting whose top-1 is within ±tol of the point's
    (None when no setting is that close); ``interpolated``: the baseline curve's bytes at
    the point's top-1 (between the two settings around it). The ratio is baseline bytes
    over the point's bytes.
    """
    base = [r for r in rows if r["family"] == "n-bit + zstd"]
    out = []
    for r in rows:
        if r["family"] == "n-bit + zstd":
            continue
        close = [b for b in base if abs(b["top1"] - r["top1"]) <= tol]
        best = min(close, key=lambda b: b["bytes_mean"]) if close else None
        interp = baseline_bytes_at(base, r["top1"])
        out.append(
            {
                "bits": r["bits"],
                "lambda": r["lambda"],
                "codec": r["codec"],
                "top1": r["top1"],
                "bytes": r["bytes_mean"],
                "within_tol_bits": best["bits"] if best else None,
                "within_tol_ratio": best["bytes_mean"] / r["bytes_mean"] if best else None,
                "interpolated_baseline_bytes": interp,
                "ratio": interp / r["bytes_mean"] if interp else None,
            }
        )
    return {"points": out}


def verdict_rows(
    points: list[dict[str, Any]],
    top1_digits: int,
    bytes_digits: int,
    label: Callable[[dict[str, Any]], str] = lambda p: f"{p['bits']}-bit λ={p['lambda']:g}",
) -> list[str]:
    """The verdict table's rows, one per rate-trained point (shared with the ImageNet report).

    A point with ``ratio_lower_bound`` (above the baseline curve) shows that bound, marked as
    one, instead of an interpolated ratio it does not have.
    """
    out = []
    for p in points:
        interp = p["interpolated_baseline_bytes"]
        close = (
            f"{p['within_tol_bits']}-bit: {p['within_tol_ratio']:.2f}x"
            if p["within_tol_bits"]
            else "none"
        )
        at = "outside the curve" if interp is None else f"{interp:.{bytes_digits}f}"
        ratio = "" if p["ratio"] is None else f"**{p['ratio']:.2f}x**"
        if p.get("ratio_lower_bound") is not None:
            at, ratio = "above the curve", f">= {p['ratio_lower_bound']:.2f}x (bound)"
        out.append(
            f"| {label(p)} | {p['codec']} | "
            f"{100 * p['top1']:.{top1_digits}f} % | {p['bytes']:.{bytes_digits}f} | {at} | "
            f"{ratio} | {close} |"
        )
    return out


def write_markdown(results: dict[str, Any], path: Path) -> None:
    meta = results["meta"]
    lines = [
        "# Rate–accuracy: rate-trained bottleneck vs n-bit + zstd (same cut)",
        "",
        f"Fashion-MNIST, {meta['model']}, C'={meta['channels']}; {meta['epochs']} epochs on "
        f"{meta['limit_train'] or 60000} training images, evaluated on "
        f"{meta['limit_val'] or 10000} test images through the real wire codec (bytes = "
        "payload bytes, top-1 = the tail on the decoded payload). **Shared 2-core machine, ~8 "
        f"other agents**, nice 10; 1-min load {meta['loadavg_before'][0]:.1f} before, "
        f"{meta['loadavg_after'][0]:.1f} after."
        + (
            " The models were trained by an earlier run of this script (train s from their "
            "metrics.json) and re-evaluated from their exported programs (`--eval-only`)."
            if meta.get("eval_only")
            else ""
        ),
        "",
        "| family | bits | λ | bytes/frame | max | top-1 | encode ms | decode ms | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lam = "" if r["lambda"] is None else f"{r['lambda']:g}"
        lines.append(
            f"| {r['family']} | {r['bits']} | {lam} | {r['bytes_mean']:.1f} | {r['bytes_max']} | "
            f"{100 * r['top1']:.2f} % | {r['encode_ms_mean']:.3f} | "
            f"{r.get('decode_ms_mean', float('nan')):.3f} | {r['train_s']:.0f} |"
        )
    lines += [
        "",
        "## Verdict (target: >= 2x fewer bytes than n-bit + zstd at equal top-1, ±0.5 pt)",
        "",
        "Baseline bytes at a point's top-1: the n-bit + zstd curve interpolated (log bytes, "
        "linear in top-1) between the two bit depths around it; a bit depth within ±0.5 pt "
        "is listed too when one exists.",
        "",
        "| rate-trained | codec | top-1 | bytes | baseline at that top-1 | ratio | within ±0.5 pt |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += verdict_rows(results["verdict"]["points"], top1_digits=2, bytes_digits=1)
    points = [p for p in results["verdict"]["points"] if p["ratio"] is not None]
    met = [p for p in points if p["ratio"] >= 2.0]
    top = max(r["top1"] for r in results["rows"] if r["family"] == "n-bit + zstd")
    near = [p for p in points if p["top1"] >= top - 0.01]
    lines += [""]
    if met:
        best = max(met, key=lambda p: p["top1"])
        lines.append(
            f"Target met by {len(met)} of {len(points)} points, up to {100 * best['top1']:.2f} % "
            f"top-1 ({best['bits']}-bit λ={best['lambda']:g} {best['codec']}: "
            f"{best['ratio']:.2f}x)."
        )
    if near:
        best = max(near, key=lambda p: p["ratio"])
        lines.append(
            f"Within 1 pt of the best baseline top-1 ({100 * top:.2f} %) the best ratio is "
            f"{best['ratio']:.2f}x ({best['bits']}-bit λ={best['lambda']:g} {best['codec']}, "
            f"{100 * best['top1']:.2f} %){': target missed there' if best['ratio'] < 2 else ''}."
        )
    write_text_atomic(path, "\n".join(lines) + "\n")


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    families = sorted({r["family"] for r in results["rows"]})

    def style(family: str) -> str:
        if family == "n-bit + zstd":
            return "o-"
        return "^-" if family.endswith("zstd_dict") else "D--"

    for fam in families:
        rs = sorted(
            (r for r in results["rows"] if r["family"] == fam), key=lambda r: r["bytes_mean"]
        )
        xs = [r["bytes_mean"] for r in rs]
        ys = [100 * (1 - r["top1"]) for r in rs]
        ax.plot(xs, ys, style(fam), label=fam)
        for r, x, y in zip(rs, xs, ys, strict=True):
            tag = f"{r['bits']}b" if r["lambda"] is None else f"λ={r['lambda']:g}"
            ax.annotate(tag, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("bytes/frame (payload, test-set mean)")
    ax.set_ylabel("top-1 error % (through the wire)")
    ax.set_title("Fashion-MNIST, resnet_small rb1 cut (shared machine)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rate_accuracy", description=__doc__)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--work", type=Path, default=Path("runs/rate_accuracy"))
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=20000)
    p.add_argument("--limit-val", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--baseline-bits", type=int, nargs="+", default=[1, 2, 3, 4, 8])
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    p.add_argument("--rate-bits", type=int, nargs="+", default=[4, 8])
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="re-evaluate the models a previous run exported under --work (no training)",
    )
    args = p.parse_args(argv)
    md = write_results(args.out, "rate_accuracy", run(args), write_markdown, plot)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
