"""``splitfit-train train``: BottleNet compression-aware training of a split model."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.commands.codec_args import add_codec_arguments, codec_from_args
from training.commands.schedule_args import add_schedule_arguments, schedule_fields
from wire.codecs import codec_class
from wire.errors import CodecError

NAME = "train"
HELP = "train a bottlenecked split model with the wire codec in the loop (BottleNet)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_schedule_arguments(p, epochs=3)
    p.add_argument("--pretrained", action="store_true", help="start from shipped weights")
    p.add_argument("--after", default="rb1", help="split point (rb1…, stage1…, stem)")
    p.add_argument("--channels", type=int, default=2, help="C': bottleneck channels")
    p.add_argument("--stride", type=int, default=2, help="s: spatial reduction factor")
    add_codec_arguments(p, param_defaults={"quality": 20}, generic=True)
    p.add_argument("--bits", type=int, default=8, help="n-bit quantizer before the codec (1..8)")
    p.add_argument(
        "--mode",
        default="aware",
        choices=("aware", "plain"),
        help="aware: codec in the training loop; plain: trained without it (naive)",
    )
    p.add_argument(
        "--rate-weight",
        type=float,
        default=0.0,
        metavar="LAMBDA",
        help="> 0: learned entropy model on the bottleneck, loss = CE + LAMBDA * bytes/frame, "
        "its tables exported for the rans / zstd_dict codecs (training.entropy_model)",
    )
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")


def run(args: argparse.Namespace) -> int:
    from training.pipeline import TrainJob, run_train

    codec = codec_from_args(args, args.bits)  # validated before any data is read
    if codec_class(codec.name).table_kind and not args.rate_weight > 0:
        raise CodecError(
            f"--codec {codec.name} codes with tables from a learned entropy model: "
            "give --rate-weight > 0 (or pick jpeg, png, zstd or raw)"
        )
    job = TrainJob(
        **schedule_fields(args),
        pretrained=args.pretrained,
        after=args.after,
        channels=args.channels,
        stride=args.stride,
        codec=codec,
        mode=args.mode,
        optimizer=args.optimizer,
        input_size=args.input_size,
        device=args.device,
        rate_weight=args.rate_weight,
    )
    result = run_train(job, args.out, resume=args.resume)
    m = result.metrics
    print(
        f"model_id {m['model_id'][:16]}  val top-1 with codec {100 * m['val_acc_with_codec']:.2f}%  "
        f"without {100 * m['val_acc_without_codec']:.2f}%  -> {args.out}"
    )
    return 0
