"""``splitfit-train bottlenetpp``: train BottleNet++ at random channel conditions, sweep unseen ones."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wire.atomicfile import write_text_atomic

NAME = "bottlenetpp"
HELP = "BottleNet++: encoder -> AWGN/erasure channel -> decoder; accuracy vs SNR / erasure rate"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default="resnet_small")
    p.add_argument("--split", default="rb2")
    p.add_argument("--feat-channels", type=int, default=32)
    p.add_argument("--bottleneck", type=int, default=8, help="C' of the BottleNet++ encoder")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--limit-train", type=int, default=20000)
    p.add_argument("--limit-val", type=int, default=2000)
    p.add_argument("--snr-train", type=float, nargs=2, default=(0.0, 20.0))
    p.add_argument("--p-train", type=float, nargs=2, default=(0.0, 0.4))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bottlenetpp.json"))


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from training.bottleneck import split_model
    from training.bottlenetpp import BottleNetPP, evaluate, train_steps
    from training.data import build_dataset
    from training.models import create_model

    torch.manual_seed(0)
    bundle = build_dataset(args.dataset, limit_train=args.limit_train, limit_val=args.limit_val)
    train = DataLoader(bundle.train, batch_size=args.batch, shuffle=True)
    val = DataLoader(bundle.val, batch_size=256)
    results: dict = {
        "dataset": bundle.name,
        "model": args.model,
        "split": args.split,
        "bottleneck_channels": args.bottleneck,
        "steps": args.steps,
        "channels": {},
    }
    sweeps = {
        "awgn": (args.snr_train, [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]),
        "erasure": (args.p_train, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]),
    }
    for kind, ((lo, hi), values) in sweeps.items():
        base = create_model(args.model, num_classes=len(bundle.labels))
        head, tail = split_model(
            base, args.split, args.feat_channels, 1, input_size=bundle.input_hw
        )
        model = BottleNetPP(head, tail, args.feat_channels, args.bottleneck, kind)
        losses = train_steps(model, train, args.steps, lo, hi)
        accs = {str(v): evaluate(model, val, v) for v in values}
        results["channels"][kind] = {
            "train_range": [lo, hi],
            "first_loss": losses[0],
            "last_loss": sum(losses[-20:]) / 20,
            "accuracy": accs,
        }
        print(json.dumps({"channel": kind, "accuracy": accs}))
    write_text_atomic(args.out, json.dumps(results, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, xl in zip(
        axes, ("awgn", "erasure"), ("SNR (dB)", "erasure probability p"), strict=True
    ):
        r = results["channels"][kind]
        xs = [float(k) for k in r["accuracy"]]
        ax.plot(xs, list(r["accuracy"].values()), "o-")
        ax.axvspan(*r["train_range"], alpha=0.15, label="training range")
        ax.set_xlabel(xl)
        ax.set_ylabel("top-1 (%)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"))
    return 0
