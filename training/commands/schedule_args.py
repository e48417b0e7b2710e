"""The data and training-schedule flags ``train`` and ``search`` share, and the TrainJob
fields they fill.

Why: ``search`` trains every candidate through the same ``training.pipeline.TrainJob`` as
``train`` does, so the dataset, backbone and schedule flags mean the same thing in both and
reach the job one way. A command states only its own defaults (``search`` trains many
candidates, so fewer epochs on a subset).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_schedule_arguments", "schedule_fields"]


def add_schedule_arguments(
    p: argparse.ArgumentParser,
    *,
    epochs: int,
    limit_train: int | None = None,
    limit_val: int | None = None,
) -> None:
    """--data, --fashion-root, --model, the schedule, --seed, --threads, --no-progress."""
    p.add_argument(
        "--data",
        default="fashion-mnist",
        help="fashion-mnist | synthetic | a folder laid out as class/xxx.jpg",
    )
    p.add_argument(
        "--fashion-root", default=None, help="folder with the Fashion-MNIST IDX .gz files"
    )
    p.add_argument("--model", default="resnet_small", help="backbone name (see --list-models)")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--limit-train", type=int, default=limit_train, help="train on a seeded subset")
    p.add_argument("--limit-val", type=int, default=limit_val)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true")


def schedule_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainJob`` fields the flags above set (``progress`` from --no-progress)."""
    return {
        "data": args.data,
        "fashion_root": args.fashion_root,
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "limit_train": args.limit_train,
        "limit_val": args.limit_val,
        "seed": args.seed,
        "threads": args.threads,
        "progress": not args.no_progress,
    }
