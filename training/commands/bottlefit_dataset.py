"""``splitfit-train bottlefit --dataset fashion-mnist``: the labelled BottleFit comparison.

Not a subcommand of its own (``training.commands`` lists only ``bottlefit``): these are the
extra flags and the ``run`` that ``bottlefit`` dispatches to when ``--dataset`` is not the
default ImageNet-photos run. The split/codec/schedule flags are shared with the ImageNet
run; their parser defaults are ImageNet choices (EfficientNet-Lite0, stage4, …), so a flag
the user did not give takes the dataset's recipe value instead (``RECIPES``). To tell "not
given" from "given, equal to the ImageNet default", those defaults are marked: a subclass
of their own type (an int stays an int) that only a parser default can be, since argparse
converts every value typed on the command line with ``type=``. ``dispatch`` strips the
marks again before the ImageNet run sees the values. Every value actually used is spelled
out in the recorded command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.commands.codec_args import codec_flags

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
DATASETS = ("imagenet", "fashion-mnist", "synthetic")

_LABELLED = {
    "model": "resnet_small",
    "after": "rb1",
    "channels": 2,
    "stride": 2,
    "codec": "zstd",
    "bits": 2,
    "stage1_epochs": 2,
    "stage2_epochs": 2,
    "stage1_lr": 1e-2,
    "stage2_lr": 1e-3,
    "batch_size": 128,
    "temperature": 2.0,
    "kd_weight": 0.5,
    "stage2_train": "tail",
    "distill_depth": 2,  # stage 1 matches the teacher at rb3 (two blocks past the rb1 split)
    "threads": 1,
}
RECIPES: dict[str, dict] = {"fashion-mnist": _LABELLED, "synthetic": _LABELLED}

# the knobs of the labelled comparison, in the order the recorded command lists them
COMMAND_KEYS = (
    "dataset", "model", "after", "channels", "stride", "codec", "bits",
    "teacher_epochs", "lr", "limit_train", "limit_test", "stage1_epochs", "stage2_epochs",
    "stage1_lr", "stage2_lr", "batch_size", "temperature", "kd_weight", "stage2_train",
    "distill_depth", "seed", "threads",
)  # fmt: skip


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "labelled comparison (--dataset fashion-mnist): BottleFit vs naive insertion vs "
        "from scratch, scored on the test set, written into --results/bottlefit.{json,md,png}"
    )
    g.add_argument(
        "--dataset",
        default="imagenet",
        choices=DATASETS,
        help="imagenet: the ImageNet-photos BottleFit run + export (default); fashion-mnist: "
        "train a teacher and compare the three methods",
    )
    g.add_argument("--teacher-epochs", type=int, default=5, help="epochs of the unsplit teacher")
    g.add_argument("--lr", type=float, default=2e-3, help="teacher / naive / scratch AdamW lr")
    g.add_argument("--limit-train", type=int, default=15000, help="training images (0: all)")
    g.add_argument("--limit-test", type=int, default=0, help="test images (0: all 10000)")
    g.add_argument("--fashion-root", type=Path, default=None, help="folder of the IDX .gz files")
    g.add_argument("--results", type=Path, default=RESULTS, help="folder of bottlefit.json")
    mark_shared_defaults(p)


_MARKS: dict[type, type] = {}


def _mark(value):
    """``value`` as an instance of a marker subclass of its own type (int, float, str)."""
    base = type(value)
    cls = _MARKS.setdefault(base, type(f"Default{base.__name__.title()}", (base,), {}))
    return cls(value)


def is_default(value) -> bool:
    """Whether ``value`` is an unchanged (marked) parser default."""
    return type(value) in _MARKS.values()


def _unmark(value):
    return type(value).__mro__[1](value) if is_default(value) else value


def mark_shared_defaults(p: argparse.ArgumentParser) -> None:
    keys = {k for recipe in RECIPES.values() for k in recipe}
    for action in p._actions:  # argparse has no public API for an action's default
        default = action.default
        if (
            action.dest in keys
            and isinstance(default, int | float | str)
            and type(default) is not bool
        ):
            action.default = _mark(default)


def apply_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Shared flags the user did not give take the dataset's recipe values; marks go."""
    recipe = RECIPES.get(args.dataset, {})
    for key, value in vars(args).items():
        setattr(args, key, recipe[key] if key in recipe and is_default(value) else _unmark(value))
    return args


def dispatch(args: argparse.Namespace) -> int | None:
    """Run the labelled comparison (its exit code), or strip the default marks and return
    None so the caller goes on with the ImageNet run."""
    if getattr(args, "dataset", "imagenet") == "imagenet":
        apply_recipe(args)
        return None
    return run_dataset(args)


def explicit_command(args: argparse.Namespace) -> str:
    parts = ["splitfit-train", "bottlefit"]
    for key in COMMAND_KEYS:
        parts += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    parts += codec_flags(args)  # --quality, --level, ...: one flag per codec parameter
    return " ".join(parts)


def run_dataset(args: argparse.Namespace) -> int:
    from training.bottlefit_compare import CompareJob, run_compare
    from training.bottlefit_report import write_section
    from training.commands.bottlefit_flags import codec_from_args, fit_from_args

    apply_recipe(args)
    if args.limit_train < 0 or args.limit_test < 0:
        raise ValueError("--limit-train/--limit-test must be >= 0 (0: all)")
    fit = fit_from_args(args)
    job = CompareJob(
        data=args.dataset,
        model=args.model,
        after=args.after,
        channels=args.channels,
        stride=args.stride,
        codec=codec_from_args(args),
        limit_train=args.limit_train or None,
        limit_test=args.limit_test or None,
        teacher_epochs=args.teacher_epochs,
        lr=args.lr,
        fit=fit,
        threads=args.threads,
        progress=not args.no_progress,
        fashion_root=str(args.fashion_root) if args.fashion_root else None,
    )
    section = run_compare(job)
    section["command"] = explicit_command(args)
    name = args.dataset.replace("-", "_")
    write_section(args.results, name, section)
    m = section["methods"]
    print(
        f"{args.dataset}: teacher {100 * section['teacher']['test_top1']:.2f}%  "
        + "  ".join(
            f"{k} {100 * v['test_top1']:.2f}% ({v['train_s']:.0f} s, {v['bytes_mean']:.0f} B)"
            for k, v in m.items()
        )
        + f"  -> {args.results / 'bottlefit.json'} [{name}]"
    )
    return 0
