"""``benchmarks/results/bottlefit.{json,md,png}``: one results file, one section per dataset.

The BottleFit comparison runs on two datasets with different tools and very different
costs: EfficientNet-Lite0 on ImageNet crops (``python -m benchmarks.bottlefit``, minutes
per method, teacher-only metrics) and a Fashion-MNIST teacher with test-set labels
(``splitfit-train bottlefit --dataset fashion-mnist``). Either can be re-run alone, so the
writer *merges*: it reads the existing JSON, replaces only its own section (``imagenet``
or ``fashion_mnist``) and regenerates the Markdown and the plot from every section present.
A result written before sections existed (a flat ImageNet dict) is read as the
``imagenet`` section, so re-running one side never destroys the other.
"""

from __future__ import annotations

import json
from pathlib import Path

from wire.atomicfile import write_atomic, write_json_atomic, write_text_atomic

SECTIONS = ("imagenet", "fashion_mnist", "synthetic")  # synthetic: tests and smoke runs
JSON_NAME = "bottlefit.json"


def load_results(out: Path) -> dict:
    """The sections already in ``out/bottlefit.json`` (``{}`` when there is none)."""
    path = Path(out) / JSON_NAME
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if not any(k in data for k in SECTIONS) and "methods" in data:
        return {"imagenet": data}  # the pre-section layout: a flat ImageNet result
    return {k: data[k] for k in SECTIONS if k in data}


def write_section(out: Path, name: str, section: dict) -> dict:
    """Replace section ``name`` in ``out/bottlefit.json``, then rewrite the .md and .png."""
    if name not in SECTIONS:
        raise ValueError(f"unknown section {name!r}; valid: {', '.join(SECTIONS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = load_results(out)
    sections[name] = section
    doc = {"benchmark": "bottlefit", **{k: sections[k] for k in SECTIONS if k in sections}}
    write_json_atomic(out / JSON_NAME, doc)
    md = markdown(doc)
    write_text_atomic(out / "bottlefit.md", md)
    save_plot(doc, out / "bottlefit.png")
    return doc


# ---------------------------------------------------------------- Markdown


def codec_label(codec: dict) -> str:
    """'JPEG q30' / 'zstd 4-bit' for titles (the codec dict of CodecConfig.to_dict)."""
    if codec["name"] == "jpeg":
        return f"JPEG q{codec['params'].get('quality')} ({codec['bits']}-bit)"
    return f"{codec['name']} {codec['bits']}-bit"


def imagenet_markdown(m: dict) -> list[str]:
    methods, spec = m["methods"], m["spec"]
    budget = m["timing_s"]["stage1"] + m["timing_s"]["stage2"]
    lines = [
        f"## ImageNet: EfficientNet-Lite0 split after {spec['after']}, "
        f"C'={spec['channels']}, s={spec['stride']}, {codec_label(m['codec'])}",
        "",
        f"bytes/frame {m['bytes']['wire_mean']:.0f} vs q85 JPEG {m['bytes']['jpeg_q85_mean']:.0f}"
        f" (ratio {m['bytes']['ratio_vs_jpeg_q85']:.3f}); teacher top-1 on the 20 samples "
        f"{100 * m['teacher']['eval_top1']:.0f}%",
        "",
        "| method | held-out agreement | held-out KL (nats) | top-1 (20 samples) "
        "| agreement (20) | train wall s | steps |",
        "|---|---|---|---|---|---|---|",
    ]
    runs = m.get("runs", {})
    for name, v in methods.items():
        r = runs.get(name, {})
        wall = f"{r['wall_s']:.0f}" if "wall_s" in r else ""
        steps = str(r.get("steps", ""))
        lines.append(
            f"| {name} | {100 * v['heldout_top1_agreement']:.1f}% | {v['heldout_kl_nats']:.3f} | "
            f"{100 * v['eval_top1']:.0f}% | {100 * v['eval_top1_agreement']:.0f}% | {wall} | {steps} |"
        )
    lines += [
        "",
        f"Training wall time of BottleFit stages 1+2: {budget:.0f} s"
        + ("." if m.get("not_run") else " (each baseline got the same wall budget)."),
    ]
    if m.get("not_run"):
        lines.append(f"Not run in this result (time): {', '.join(m['not_run'])}.")
    if m.get("command"):
        lines += ["", f"Recipe: `{m['command']}`"]
    if m.get("note"):
        lines += ["", m["note"]]
    return lines


def labelled_markdown(m: dict) -> list[str]:
    spec, methods = m["spec"], m["methods"]
    fit = m["job"]["fit"]
    lines = [
        f"## {_title(m['dataset'])}: {m['model']} split after {spec['after']}, C'={spec['channels']}, "
        f"s={spec['stride']}, {codec_label(m['codec'])}",
        "",
        f"Teacher ({m['model']}, {m['teacher']['epochs']} epochs on {m['data']['train_size']} "
        f"training images): test top-1 **{100 * m['teacher']['test_top1']:.2f}%** on "
        f"{m['data']['val_size']} test images. Bottleneck {spec['feature_chw']} → "
        f"{spec['bottleneck_chw']}; the untrained bottleneck inserted into the teacher: "
        f"{100 * m['untrained_insertion']['test_top1']:.2f}%.",
        "",
        "| method | test top-1 | epochs | train wall s | bytes/frame (mean) |",
        "|---|---|---|---|---|",
    ]
    for name, v in methods.items():
        lines.append(
            f"| {name} | {100 * v['test_top1']:.2f}% | {v['epochs_label']} | "
            f"{v['train_s']:.0f} | {v['bytes_mean']:.1f} |"
        )
    reps = m.get("replicates")
    if reps:
        names = list(methods)
        lines += [
            "",
            "Same command with other `--seed`s (teacher, training subset and inits all change):",
            "",
            "| seed | teacher | " + " | ".join(names) + " |",
            "|---" * (2 + len(names)) + "|",
        ]
        for r in reps:
            cells = " | ".join(f"{100 * r['methods'][n]:.2f}%" for n in names)
            lines.append(f"| {r['seed']} | {100 * r['teacher']:.2f}% | {cells} |")
        means = " | ".join(
            f"{100 * sum(r['methods'][n] for r in reps) / len(reps):.2f}%" for n in names
        )
        teacher_mean = 100 * sum(r["teacher"] for r in reps) / len(reps)
        lines.append(f"| mean | {teacher_mean:.2f}% | {means} |")
    b = methods["bottlefit"]
    lines += [
        "",
        f"The uint8 input image is {m['bytes']['image_raw']} bytes. Per-epoch test "
        "accuracy is in the JSON (`curve`) and the plot.",
        "",
        "Methods (same teacher, same bottleneck, same training images, same epoch count):",
        "- **naive_insertion**: the bottleneck inserted into the trained teacher and the whole "
        "model fine-tuned end to end with cross-entropy, codec in the loop (BottleNet-style).",
        "- **scratch**: the same bottlenecked architecture from random init, cross-entropy.",
        f"- **bottlefit**: stage 1 head distillation ({fit['stage1_epochs']} epochs, MSE to the "
        f"frozen teacher's features {_depth_text(fit.get('distill_depth', 0), spec['after'])}), then "
        f"stage 2 ({fit['stage2_epochs']} epochs, head frozen, restoration + tail trained with "
        f"{fit['kd_weight']}·KD(T={fit['temperature']}) + {1 - fit['kd_weight']:.2g}·CE). "
        f"After stage 1 alone: {100 * b['stage1_test_top1']:.2f}%. Its train wall time "
        f"excludes the one-off teacher pass that caches features and logits "
        f"({b['teacher_cache_s']:.0f} s); stages 1-2 never re-run the frozen head prefix, "
        "so an epoch costs less than an end-to-end epoch.",
        "",
        f"Run: `{m['command']}` — total {m['timing_s']['total']:.0f} s, "
        f"{m['host']['threads']} torch thread(s) on a shared 2-core machine.",
    ]
    if m.get("note"):
        lines += ["", m["note"]]
    return lines


def _depth_text(depth: int, after: str) -> str:
    if depth == 0:
        return f"at {after}; only reduction + restoration train"
    return (
        f"{depth} block(s) after the {after} split; reduction + restoration + those blocks "
        "train, so the bottleneck replaces a run of teacher layers as in BottleFit"
    )


def markdown(doc: dict) -> str:
    lines = ["# BottleFit vs baselines at the same bottleneck", ""]
    if "imagenet" in doc:
        lines += [*imagenet_markdown(doc["imagenet"]), ""]
    for name in SECTIONS[1:]:
        if name in doc:
            lines += [*labelled_markdown(doc[name]), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- plot


def save_plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in SECTIONS if k in doc]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False)
    for ax, name in zip(axes[0], panels, strict=True):
        if name == "imagenet":
            _imagenet_panel(ax, doc[name])
        else:
            _labelled_panel(ax, doc[name])
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def _imagenet_panel(ax, m: dict) -> None:
    methods, spec = m["methods"], m["spec"]
    names = list(methods)
    pos = range(len(names))
    ax.bar(
        [p - 0.2 for p in pos],
        [100 * methods[n]["heldout_top1_agreement"] for n in names],
        0.4,
        label="held-out top-1 agreement with the teacher",
    )
    ax.bar(
        [p + 0.2 for p in pos],
        [100 * methods[n]["eval_top1"] for n in names],
        0.4,
        label=f"top-1 on the 20 labelled photos (teacher {100 * m['teacher']['eval_top1']:.0f}%)",
    )
    ax.set_xticks(list(pos), names)
    ax.axhline(95, ls="--", c="k", lw=1, label="agreement target 95%")
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_title(
        f"ImageNet, Lite0 after {spec['after']}, C'={spec['channels']}, {codec_label(m['codec'])}"
    )
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend(loc="upper right", fontsize=7)


def _title(dataset: str) -> str:
    return {"fashion-mnist": "Fashion-MNIST", "synthetic": "Synthetic shapes"}.get(dataset, dataset)


def _labelled_panel(ax, m: dict) -> None:
    """Test accuracy per epoch from epoch 1 (epoch 0, the untrained bottleneck, is at chance
    and would squash the few points that separate the methods; it is in the JSON/table)."""
    spec = m["spec"]
    lows = []
    for name, v in m["methods"].items():
        curve = v["curve"][1:]
        lows.append(min(curve))
        ax.plot(
            range(1, len(curve) + 1),
            [100 * a for a in curve],
            "o-",
            ms=4,
            label=f"{name}: {100 * v['test_top1']:.1f}%, {v['train_s']:.0f} s train",
        )
    teacher = 100 * m["teacher"]["test_top1"]
    ax.axhline(teacher, ls="--", c="k", lw=1, label=f"teacher (unsplit) {teacher:.1f}%")
    ax.set_ylim(max(0.0, 100 * min(lows) - 3), min(100.0, teacher + 3))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch (BottleFit: stage 1 epochs, then stage 2)")
    ax.set_ylabel(f"{_title(m['dataset'])} test top-1 (%)")
    ax.set_title(
        f"{_title(m['dataset'])}, {m['model']} after {spec['after']}, C'={spec['channels']}, "
        f"s={spec['stride']}, {codec_label(m['codec'])}"
    )
    ax.legend(loc="lower right", fontsize=8)
