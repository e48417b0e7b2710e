"""Rate–accuracy on the held-out ImageNet photos: rate-trained BottleFit vs n-bit + zstd.

Run: ``nice -n 10 python -m benchmarks.rate_accuracy_imagenet --baseline DIR... --rate DIR...``
-> ``benchmarks/results/rate_accuracy_imagenet.{json,md,png}``.

Why: issue #21's target is, on the held-out ImageNet evaluation, at the same top-1 (±0.5 pt)
>= 2x fewer bytes/frame for a bottleneck trained with a rate term (``--rate-weight``, coded
by ``rans`` / ``zstd_dict`` with the tables its manifests carry) than the best n-bit + zstd
setting of the same cut. ``benchmarks.rate_accuracy`` measures that on Fashion-MNIST; this
one measures it where the project's splits live: EfficientNet-Lite0 after stage3, BottleFit
on the 500 training photos of the ImageNet sample, scored on its 200 held-out photos.

Every split (an exported BottleFit ``--out`` folder) is measured in the same run as the
frontier benchmark does (its helpers): the photos in the board's view, the int8 head the
device runs (``convert-head`` + ai-edge-litert), each payload encoded by the real wire codec
and decoded as the server does, the float tail on the decoded features. The rate-trained
splits are coded with both table codecs (and with plain zstd of the same codes, which tells
the training's share from the coder's); the two lossless table codecs must decode to the
same features, which is checked. The baseline curve is the n-bit + zstd splits' Pareto front,
interpolated in log bytes between the two settings around a point's top-1
(``benchmarks.rate_accuracy.verdict``). Encode and decode ms per frame are medians over the
held-out frames on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import frontier
from benchmarks.harness.artifacts import prepare_calibration_folder
from benchmarks.harness.results import write_results
from benchmarks.rate_accuracy import verdict, verdict_rows
from wire.atomicfile import write_atomic, write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "n-bit + zstd"
TOL = 0.005  # ±0.5 pt of top-1


def codec_for(folder: Path, name: str, params: dict | None = None):
    """A wire codec for the split in ``folder``: its manifest's shape, bits and tables, with
    codec ``name`` (a table codec uses the tables exported with the split)."""
    from training.compressor import quant_params_for
    from wire.codecs import FeatureCodec
    from wire.manifest import codec_tables

    m = json.loads((folder / "head.pt.json").read_text())
    codec = m["codec"]
    qp = quant_params_for(float(m["extra"]["split"]["out_max"]), int(codec["bits"]))
    own = dict(codec["params"]) if name == codec["name"] else {}
    own.pop("tables", None)  # the codec sets the table hash itself from ``tables``
    return FeatureCodec(
        tuple(m["bottleneck_chw"]),
        qp,
        name,
        {**own, **(params or {})},
        tables=codec_tables(codec),
    )


def timed_roundtrip(fc, tensors: list[np.ndarray]) -> tuple[list[bytes], list[np.ndarray], dict]:
    """Encode and decode every int8 head output; payloads, decoded features, median ms."""
    payloads, decoded, enc, dec = [], [], [], []
    for t in tensors:
        t0 = time.perf_counter()
        p = fc.encode_int8(t, layout="NHWC")
        t1 = time.perf_counter()
        decoded.append(fc.decode_float(p))
        dec.append(time.perf_counter() - t1)
        enc.append(t1 - t0)
        payloads.append(p)
    ms = {
        "encode_ms_median": 1e3 * statistics.median(enc),
        "decode_ms_median": 1e3 * statistics.median(dec),
        "encode_ms_p90": 1e3 * float(np.percentile(enc, 90)),
        "decode_ms_p90": 1e3 * float(np.percentile(dec, 90)),
    }
    return payloads, decoded, ms


def tail_logits(tail, decoded: list[np.ndarray]):
    import torch

    z = torch.from_numpy(np.stack(decoded))
    with torch.no_grad():
        return torch.cat([tail(z[i : i + 50]) for i in range(0, len(z), 50)])


def metrics_of(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def rate_weight_of(folder: Path) -> float | None:
    fit = metrics_of(folder).get("job", {}).get("fit", {})
    return fit.get("rate_weight") or None


# the rate-trained splits' codecs: rans at its default 32 lanes, zstd with the dictionary,
# and plain zstd of the same codes (what the table coders add over zstd on the same
# rate-trained features). rans at 8 lanes would save 96 B of lane states per frame but its
# numpy loop runs 4x as many steps: tried, ~100 ms per frame here, left out.
RATE_CODECS: list[tuple[str, dict]] = [("rans", {}), ("zstd_dict", {}), ("zstd", {})]


def family_of(lam: float | None, name: str, params: dict) -> str:
    if lam is None:
        return BASELINE
    lanes = f" ({params['lanes']} lanes)" if "lanes" in params else ""
    return f"rate-trained + {name}{lanes}"


def score(
    folder: Path,
    tflite: Path,
    pixels: np.ndarray,
    labels: np.ndarray,
    teacher,
    codecs: list[tuple[str, dict]],
) -> list[dict[str, Any]]:
    """One row per codec for the split in ``folder``: bytes, held-out scores, codec ms."""
    import torch

    from device.head import Head

    m = json.loads((folder / "head.pt.json").read_text())
    split = m["extra"]["split"]
    tail = torch.jit.load(str(folder / "tail.pt")).eval()
    head = Head(folder.name, tflite, tflite.with_name("head.json"), num_threads=2)
    int8_out = [head.run(p[None]).tensor for p in pixels]
    lam = rate_weight_of(folder)
    fit = metrics_of(folder).get("job", {}).get("fit", {})
    recipe = {k: fit.get(k) for k in ("stage2_train", "stage2_lr", "stage2_epochs")}
    rows, reference = [], None
    for name, params in codecs:
        fc = codec_for(folder, name, params)
        payloads, decoded, ms = timed_roundtrip(fc, int8_out)
        feats = np.stack(decoded)
        if reference is None:
            reference = feats
        elif not np.array_equal(feats, reference):  # all codecs here are lossless
            raise AssertionError(f"{folder}: {name} decodes to other features than the first")
        sc = frontier.scores(tail_logits(tail, decoded), teacher, labels)
        sizes = [len(p) for p in payloads]
        family = family_of(lam, name, params)
        rows.append(
            {
                "family": family,
                "folder": str(folder),
                "split": split["after"],
                "channels": split["channels"],
                "bits": int(m["codec"]["bits"]),
                "lambda": lam,
                "codec": name + (f" ({params['lanes']} lanes)" if "lanes" in params else ""),
                "codec_params": params,
                "recipe": recipe,  # stage 2 of the BottleFit run (its metrics.json)
                "model_id": m["model_id"],
                "bytes_mean": float(np.mean(sizes)),
                "bytes_max": int(np.max(sizes)),
                "top1": sc["heldout_top1"],
                "top5": sc["heldout_top5"],
                "top1_loss_pts": sc["heldout_top1_loss_pts"],
                "agreement": sc["agreement"],
                "kl_nats": sc["kl_nats"],
                **ms,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def convert(folder: Path, work: Path, calib: Path, caches: list[Path]) -> Path:
    """The split's int8 head: a copy of one another run already converted (same model_id),
    else ``convert-head`` into ``work``."""
    model_id = json.loads((folder / "head.pt.json").read_text())["model_id"]
    for cache in caches:
        src = cache / model_id[:16]
        manifest = src / "head.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("model_id") == model_id:
            dst = work / model_id[:16]
            if not (dst / "head.json").is_file():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            return dst / "head.tflite"
    return frontier.convert(folder, work, calib)


def with_bounds(v: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add, for points above the baseline curve, a lower bound of the ratio at equal top-1.

    Why: a point more accurate than every baseline setting has no baseline at its top-1 to
    interpolate; the baseline would need at least the bytes of its most accurate setting
    to reach it (more bytes, more accuracy along the front), so that setting's bytes over
    the point's bound the ratio from below. Only a bound: it is reported as such.
    """
    for p, r in zip(v["points"], [r for r in rows if r["family"] != BASELINE], strict=True):
        p["recipe"] = r.get("recipe")  # verdict() keeps the rows' order
    base = [r for r in rows if r["family"] == BASELINE]
    if not base:
        return v
    best = max(base, key=lambda r: (r["top1"], -r["bytes_mean"]))
    for p in v["points"]:
        above = p["ratio"] is None and p["top1"] > best["top1"]
        p["ratio_lower_bound"] = best["bytes_mean"] / p["bytes"] if above else None
    return v


def rejudged(results: dict[str, Any]) -> dict[str, Any]:
    """The verdict recomputed from a result's rows (``--from-json``: a report re-rendered
    by newer code judges the measured rows with that code, never re-measuring)."""
    curve = [r for r in results["rows"] if r["family"] != "rate-trained + zstd"]
    return {**results, "verdict": with_bounds(verdict(curve, TOL), curve)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from training.models import create_model

    load_before = os.getloadavg()
    torch.set_num_threads(2)
    args.work.mkdir(parents=True, exist_ok=True)
    calib = args.work / "calib"
    prepare_calibration_folder(calib)
    pixels, labels = frontier.heldout_pixels(args.imagenet_root)
    teacher_model = create_model("efficientnet_lite0", pretrained=True).eval()
    x = frontier.normalised(pixels, teacher_model.mean, teacher_model.std)
    with torch.no_grad():
        teacher = torch.cat([teacher_model(x[i : i + 25]) for i in range(0, len(x), 25)])
    rows: list[dict[str, Any]] = []
    for folder in args.baseline:
        tfl = convert(folder, args.work, calib, args.cache)
        rows += score(folder, tfl, pixels, labels, teacher, [("zstd", {})])
    for folder in args.rate:
        tfl = convert(folder, args.work, calib, args.cache)
        rows += score(folder, tfl, pixels, labels, teacher, RATE_CODECS)
    return rejudged(
        {
            "rows": rows,
            "meta": {
                "model": "efficientnet_lite0",
                "n_heldout": len(labels),
                "teacher_top1": float((teacher.argmax(1).numpy() == labels).mean()),
                "head": "int8 (convert-head + ai-edge-litert, 2 threads), float tail",
                "torch": torch.__version__,
                "machine": platform.machine(),
                "loadavg_before": list(load_before),
                "loadavg_after": list(os.getloadavg()),
                "note": args.note,
            },
        }
    )


def point_label(p: dict[str, Any]) -> str:
    """``2-bit λ=0.01``, plus the stage-2 recipe when it is not the artifact's (all, 3e-4)."""
    rc = p.get("recipe") or {}
    tag = f"{p['bits']}-bit λ={p['lambda']:g}"
    if rc.get("stage2_train") and (rc["stage2_train"], rc["stage2_lr"]) != ("all", 0.0003):
        tag += f" ({rc['stage2_train']}, lr {rc['stage2_lr']:g})"
    return tag


def _fmt_lam(r: dict) -> str:
    return "" if r["lambda"] is None else f"{r['lambda']:g}"


def write_markdown(results: dict[str, Any], path: Path) -> None:
    meta = results["meta"]
    lines = [
        "# Rate–accuracy on the held-out ImageNet photos (EfficientNet-Lite0, stage3 cut)",
        "",
        f"{meta['n_heldout']} held-out ImageNet-sample photos (never trained on), board view; "
        f"teacher top-1 {100 * meta['teacher_top1']:.1f} %. Every split is scored in this run "
        f"through the {meta['head']}: bytes are payload bytes of the real wire codec, top-1 is "
        "the tail's answer on the decoded payload. Encode/decode: median ms per frame over the "
        "held-out frames (p90 in the JSON). "
        f"**Loaded shared 2-core machine** (1-min load {meta['loadavg_before'][0]:.1f} before, "
        f"{meta['loadavg_after'][0]:.1f} after): {meta['note']}",
        "",
        "Every split is a `splitfit-train bottlefit` run: EfficientNet-Lite0 cut after stage3, "
        "stride 2, the 500 training photos of the ImageNet sample × (1 crop + 1 mixup/CutMix "
        "blend), stage 1 on cached teacher features, seed 0; the 'stage 2' column is what "
        "trained in stage 2, its peak learning rate and epochs. Rate-trained runs add "
        "λ·estimated bytes/frame to stage 2's KD loss (`--rate-weight`).",
        "",
        "| family | C' | bits | λ | stage 2 | bytes/frame | max | top-1 | top-5 | loss pts "
        "| agreement | encode ms | decode ms |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        rc = r.get("recipe") or {}
        stage2 = (
            f"{rc['stage2_train']}, lr {rc['stage2_lr']:g}, {rc['stage2_epochs']} ep"
            if rc.get("stage2_train")
            else "?"
        )
        lines.append(
            f"| {r['family']} | {r['channels']} | {r['bits']} | {_fmt_lam(r)} | {stage2} | "
            f"{r['bytes_mean']:.0f} | {r['bytes_max']} | {100 * r['top1']:.1f} % | "
            f"{100 * r['top5']:.1f} % | {r['top1_loss_pts']:.1f} | {100 * r['agreement']:.1f} % "
            f"| {r['encode_ms_median']:.3f} | {r['decode_ms_median']:.3f} |"
        )
    lines += [
        "",
        "## Verdict (target: >= 2x fewer bytes than n-bit + zstd at equal top-1, ±0.5 pt)",
        "",
        "Baseline bytes at a point's top-1: the n-bit + zstd Pareto front interpolated (log "
        "bytes, linear in top-1) between the two settings around it; a setting within ±0.5 pt "
        "is listed too when one exists. 'outside the curve': the point's top-1 is above (or "
        "below) every baseline setting, so no baseline reaches it.",
        "",
        "| rate-trained | codec | top-1 | bytes | baseline at that top-1 | ratio | within ±0.5 pt |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += verdict_rows(results["verdict"]["points"], 1, 0, point_label)
    lines += ["", *summary_lines(results)]
    write_text_atomic(path, "\n".join(lines) + "\n")


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The target, said plainly: met or missed, by how much, and the codec times."""
    points = [p for p in results["verdict"]["points"] if p["ratio"] is not None]
    out = []
    if points:
        best = max(points, key=lambda p: p["ratio"])
        verdict_word = "met" if best["ratio"] >= 2.0 else "missed"
        out.append(
            f"Best ratio at equal top-1: **{best['ratio']:.2f}x** ({best['bits']}-bit "
            f"λ={best['lambda']:g} {best['codec']}, {100 * best['top1']:.1f} % top-1, "
            f"{best['bytes']:.0f} B vs {best['interpolated_baseline_bytes']:.0f} B): target "
            f"{verdict_word}"
            + ("." if best["ratio"] >= 2.0 else f" by {2.0 / best['ratio']:.2f}x.")
        )
    else:
        out.append("No rate-trained point falls inside the baseline curve's top-1 range.")
    bounds = [p for p in results["verdict"]["points"] if p.get("ratio_lower_bound")]
    if bounds:
        b = max(bounds, key=lambda p: p["ratio_lower_bound"])
        out.append(
            f"Above the curve (more accurate than every baseline setting): best bound "
            f">= {b['ratio_lower_bound']:.2f}x ({b['bits']}-bit λ={b['lambda']:g} {b['codec']}, "
            f"{100 * b['top1']:.1f} % top-1, {b['bytes']:.0f} B); a bound only, not the ratio "
            "at equal top-1 the target asks for."
        )
    for codec in ("rans", "zstd_dict"):
        rs = [r for r in results["rows"] if r["lambda"] is not None and r["codec"] == codec]
        if not rs:
            continue
        enc = sorted(r["encode_ms_median"] for r in rs)
        dec = sorted(r["decode_ms_median"] for r in rs)
        typical = max(enc[len(enc) // 2], dec[len(dec) // 2])
        out.append(
            f"{codec} on these cuts, per frame (median over the held-out frames, one value per "
            f"split): encode {enc[0]:.2f}–{enc[-1]:.2f} ms (middle split {enc[len(enc) // 2]:.2f}), "
            f"decode {dec[0]:.2f}–{dec[-1]:.2f} ms (middle {dec[len(dec) // 2]:.2f}); target "
            "<= 1 ms each: " + ("met." if typical <= 1.0 else "missed.")
        )
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    # the baseline is a curve (one recipe, C' and bits); rate-trained points are markers only:
    # they differ in λ and stage-2 recipe, and a line through them would suggest a front
    styles = {BASELINE: "o-", "rate-trained + rans": "D", "rate-trained + zstd_dict": "^",
              "rate-trained + zstd": "x"}  # fmt: skip
    families = [*styles, *sorted({r["family"] for r in results["rows"]} - set(styles))]
    for fam in families:
        style = styles.get(fam, "v")
        rs = sorted(
            (r for r in results["rows"] if r["family"] == fam), key=lambda r: r["bytes_mean"]
        )
        if not rs:
            continue
        xs = [r["bytes_mean"] for r in rs]
        ys = [r["top1_loss_pts"] for r in rs]
        ax.plot(xs, ys, style, label=fam, alpha=0.85)
        if fam not in (BASELINE, "rate-trained + rans"):
            continue  # one label per model: the baseline's and the rans row's
        for r, xv, yv in zip(rs, xs, ys, strict=True):
            tag = f"C'={r['channels']} {r['bits']}b" if r["lambda"] is None else point_label(r)
            ax.annotate(tag, (xv, yv), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("bytes/frame (payload, mean over the held-out photos)")
    ax.set_ylabel("held-out top-1 loss vs teacher (points, int8 head)")
    n = results["meta"]["n_heldout"]
    ax.set_title(f"EfficientNet-Lite0 stage3 cut, {n} held-out ImageNet photos (loaded machine)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rate_accuracy_imagenet",
                                description=__doc__.splitlines()[0])  # fmt: skip
    p.add_argument("--baseline", type=Path, nargs="+", default=[],
                   help="exported n-bit + zstd BottleFit splits (--out folders)")  # fmt: skip
    p.add_argument("--rate", type=Path, nargs="+", default=[],
                   help="exported rate-trained BottleFit splits (--rate-weight > 0)")  # fmt: skip
    p.add_argument("--from-json", type=Path, default=None,
                   help="re-judge and re-render a previous result (its JSON) without measuring")  # fmt: skip
    p.add_argument("--imagenet-root", default=None, help="folder of the ImageNet sample")
    p.add_argument("--work", type=Path, default=Path("runs/rate_accuracy_imagenet"))
    p.add_argument("--cache", type=Path, nargs="*", default=[Path("demo-out/frontier")],
                   help="folders of heads converted earlier (frontier's --work), read only")  # fmt: skip
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--note", default="other agents' training jobs shared the 2 cores; "
                   "compare within this file only.")  # fmt: skip
    args = p.parse_args(argv)
    if args.from_json is not None:
        try:
            previous = json.loads(args.from_json.read_text())
        except (OSError, ValueError) as exc:
            p.error(f"--from-json {args.from_json}: {exc}")
        md = write_results(args.out, "rate_accuracy_imagenet", rejudged(previous), write_markdown,
                           plot)  # fmt: skip
        print(md.read_text())
        return 0
    if not args.baseline or not args.rate:
        p.error("give --baseline and --rate splits (or --from-json)")
    for folder in [*args.baseline, *args.rate]:
        missing = [n for n in ("head.pt", "head.pt.json", "tail.pt") if not (folder / n).is_file()]
        if missing:
            p.error(f"{folder}: not an exported split (missing {', '.join(missing)})")
    for folder in args.rate:
        if rate_weight_of(folder) is None:
            p.error(f"{folder}: not rate-trained (its metrics.json has no rate_weight)")
    for folder in args.baseline:
        if rate_weight_of(folder) is not None:
            p.error(f"{folder}: rate-trained, pass it with --rate")
    md = write_results(args.out, "rate_accuracy_imagenet", run(args), write_markdown, plot)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
