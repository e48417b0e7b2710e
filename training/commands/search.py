"""``splitfit-train search``: BottleNet Algorithm 1 (Sec. 2.3) end to end.

For every split location x C' x s candidate: train it compression-aware with the ``train``
pipeline (``training.pipeline.run_train``), sweep the wire quantizer's bits 1..8 through the
real codec (``FeatureCodec.roundtrip_float``) and keep the fewest bits within the accuracy
budget of the unsplit baseline (``training.search.fewest_bits``), profile head latency, measure
bytes/frame from real wire payloads, then cost each candidate on every link of a links TOML
and ``select`` the partition minimizing latency or device energy.

Head latency (``training.search_latency``): with ``--latency-backend auto`` (default) each
candidate's exported head is converted to int8 TFLite by the project's converter (calibrated
on real training images) and timed with the device's loader at batch 1; torch is timed in the
same loop for comparison. Without the converter, or when a conversion fails, every candidate
is costed with its torch time and the reason is written to the results.

Every candidate's head/tail is exported (with its chosen bits in the manifests), plus the
converted ``head.tflite`` + ``head.json``, so a device can switch partitions at run time.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

from training.commands.codec_args import add_codec_arguments, codec_from_args
from training.commands.schedule_args import add_schedule_arguments, schedule_fields
from training.search_latency import BACKEND_CHOICES
from wire.atomicfile import write_json_atomic, write_text_atomic

NAME = "search"
HELP = "BottleNet Algorithm 1: train split x C' x s candidates, pick bits, cost on links, select"


def _csv(kind):
    def parse(text: str) -> list:
        try:
            vals = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated values, got {text!r}"
            ) from None
        if not vals:
            raise argparse.ArgumentTypeError("empty list")
        return vals

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_schedule_arguments(p, epochs=1, limit_train=4000, limit_val=1000)
    p.add_argument("--splits", type=_csv(str), default=["rb1", "rb2", "rb3"])
    p.add_argument("--channels", type=_csv(int), default=[2, 4], help="C' values, e.g. 2,4")
    p.add_argument("--strides", type=_csv(int), default=[1, 2], help="s values, e.g. 1,2")
    add_codec_arguments(p, param_defaults={"quality": 20})
    p.add_argument("--train-bits", type=int, default=8, help="bits used while training")
    p.add_argument("--budget", type=float, default=2.0, help="accuracy budget, points")
    p.add_argument("--baseline-acc", type=float, default=None, help="skip baseline training (%%)")
    p.add_argument("--bytes-samples", type=int, default=200, help="frames encoded for bytes")
    p.add_argument("--latency-runs", type=int, default=30, help="timed runs per head (median)")
    p.add_argument(
        "--latency-backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="auto: int8 TFLite via the converter when it is installed and every head converts, "
        "else torch; tflite: require it (error otherwise); torch: no conversion",
    )
    p.add_argument("--latency-threads", type=int, default=1, help="threads when timing heads")
    p.add_argument(
        "--calib-images", type=int, default=64, help="training images to calibrate int8 with"
    )
    p.add_argument(
        "--min-cosine", type=float, default=0.99, help="converter verification gate (int8 vs torch)"
    )
    p.add_argument("--head-power-mw", type=float, default=2000.0, help="device power running head")
    p.add_argument("--links", type=Path, default=Path("examples/links.toml"))
    p.add_argument("--objective", default="both", choices=("latency", "energy", "both"))
    p.add_argument("--out", type=Path, default=Path("runs/search"), help="per-candidate exports")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results/search.json"))
    p.add_argument("--note", default="", help="free text added to the Markdown report")


def candidate_name(split: str, channels: int, stride: int) -> str:
    return f"{split}_c{channels}_s{stride}"


def _accuracy_with(net, comp, roundtrip, val_loader) -> float:
    from training.trainer import evaluate

    old = comp.roundtrip
    comp.roundtrip, comp.enabled = roundtrip, True
    try:
        return 100.0 * evaluate(net, val_loader)[1]
    finally:
        comp.roundtrip = old


def _wire_bytes(head, spec, codec_cfg, val_set, n: int) -> float:
    """Mean payload size of real FeatureCodec.encode_int8 output over n validation frames."""
    import numpy as np
    import torch

    from training.compressor import quant_params_for
    from wire.codecs import FeatureCodec
    from wire.quant import quantize_float_to_int8

    qp = quant_params_for(spec.out_max, codec_cfg.bits)
    fc = FeatureCodec(tuple(spec.bottleneck_chw), qp, codec_cfg.name, dict(codec_cfg.params))
    sizes = []
    head.eval()
    with torch.no_grad():
        for i in range(min(n, len(val_set))):
            x = val_set[i][0].unsqueeze(0)
            z = head(x)[0].numpy().astype(np.float32)
            sizes.append(len(fc.encode_int8(quantize_float_to_int8(z, qp), layout="CHW")))
    return float(np.mean(sizes))


def _baseline(args, progress: bool) -> float:
    """Unsplit backbone trained on the same schedule: the accuracy the budget is measured from."""
    import torch

    from training.data import build_dataset
    from training.models import create_model
    from training.pipeline import loaders
    from training.trainer import FitConfig, evaluate, fit

    torch.manual_seed(args.seed)
    bundle = build_dataset(
        args.data,
        limit_train=args.limit_train,
        limit_val=args.limit_val,
        fashion_root=args.fashion_root,
        seed=args.seed,
    )
    model = create_model(args.model, num_classes=len(bundle.labels))
    train, val = loaders(bundle, args.batch_size, args.seed)
    fit(model, train, val, FitConfig(epochs=args.epochs, lr=args.lr, progress=progress))
    return 100.0 * evaluate(model, val)[1]


def cost_table(
    cands: list, links: list, objectives: tuple[str, ...], feasible: list | None = None
) -> tuple[list, dict]:
    """Rows with latency/energy per link, and the selected candidate per link x objective.

    Selection is among ``feasible`` (candidates within the accuracy budget) when any are,
    as Algorithm 1 only costs partitions that met the budget; otherwise among all.
    """
    from training.search import cost, select

    pool = feasible or cands
    rows = []
    for c in cands:
        costs = {
            ln.name: {"latency_ms": cost(c, ln).latency_ms, "energy_mj": cost(c, ln).energy_mj}
            for ln in links
        }
        rows.append({**asdict(c), "name": candidate_name(c.split, c.channels, c.stride), **costs})
    chosen = {
        ln.name: {
            obj: candidate_name(*(lambda s: (s.split, s.channels, s.stride))(select(pool, ln, obj)))
            for obj in objectives
        }
        for ln in links
    }
    return rows, chosen


def eligible(cands: list, extra: dict, budget: float) -> tuple[list, str]:
    """Candidates the selection may pick, and why.

    Algorithm 1 only costs partitions within the accuracy budget of the unsplit baseline. If a
    (short) schedule leaves none within it, picking the cheapest regardless would happily
    choose a near-chance model, so the budget is applied to the best candidate instead.
    """

    def name(c) -> str:
        return candidate_name(c.split, c.channels, c.stride)

    ok = [c for c in cands if extra[name(c)]["within_budget"]]
    if ok:
        return ok, "within the budget of the unsplit baseline"
    best = max(c.accuracy for c in cands)
    pool = [c for c in cands if c.accuracy >= best - budget]
    return pool, (
        f"none within the budget of the baseline; relaxed to within {budget} points "
        f"of the best candidate ({best:.2f}%)"
    )


def _latency_text(result: dict) -> str:
    lat = result["latency"]
    if result["latency_backend"] == "tflite-int8":
        how = (
            "int8 TFLite heads from convert-head (calibrated on "
            f"{lat['calibration']['images']} {result['data']} training images), timed with "
            "ai-edge-litert through device.head.Head"
        )
    else:
        how = f"torch float heads ({lat['reason']})"
    return (
        f"Head latency used for the costs: **{result['latency_backend']}** — {how}; median of "
        f"{lat['runs']} batch-1 runs after warm-up at {lat['threads']} thread(s), torch and "
        "int8 interleaved run by run on this shared x86 CPU, not a board."
    )


def render_md(result: dict, png_name: str = "search.png") -> str:
    links = result["links"]
    lines = [
        "# Algorithm 1 search (BottleNet Sec. 2.3)",
        "",
        f"Data {result['data']}, model {result['model']}, schedule: {result['schedule']}. "
        f"Unsplit baseline top-1 {result['baseline_acc']:.2f}%, budget {result['budget']} points; "
        f"codec {result['codec']}. Head power assumed {result['head_power_mw']} mW. "
        "Bytes: mean real wire payload.",
        "",
        _latency_text(result),
        "",
    ]
    if result.get("note"):
        lines += [result["note"], ""]
    hdr = ["candidate", "bits", "top-1 %", "int8 head ms", "torch head ms", "bytes"]
    for ln in links:
        hdr += [f"{ln} ms", f"{ln} mJ"]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in result["candidates"]:
        tfl = r.get("head_ms_tflite")
        cells = [
            r["name"]
            + ("*" if r["eligible"] else "")
            + ("" if r["within_budget"] else " (over budget)"),
            str(r["bits"]),
            f"{r['accuracy']:.2f}",
            "—" if tfl is None else f"{tfl:.3f}",
            f"{r['head_ms_torch']:.3f}",
            f"{r['nbytes']:.0f}",
        ]
        for ln in links:
            cells += [f"{r[ln]['latency_ms']:.2f}", f"{r[ln]['energy_mj']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    failures = result["latency"].get("failures") or {}
    if failures:
        lines += ["", "int8 conversions that failed (these heads have no head.tflite):", ""]
        lines += [f"- {name}: {err}" for name, err in failures.items()]
    lines += [
        "",
        f"Chosen partition (selected among candidates {result['selected_from']}; "
        "eligible ones are marked *):",
        "",
        "| link | objective | candidate |",
        "|---|---|---|",
    ]
    for ln, by_obj in result["chosen"].items():
        for obj, name in by_obj.items():
            lines.append(f"| {ln} | {obj} | {name} |")
    lines += ["", "Accuracy (%) per bits, through the wire codec:", ""]
    bits = list(range(1, 9))
    lines += ["| candidate | " + " | ".join(map(str, bits)) + " |", "|---|" + "---|" * len(bits)]
    for r in result["candidates"]:
        accs = " | ".join(f"{r['acc_by_bits'][str(b)]:.1f}" for b in bits)
        lines.append(f"| {r['name']} | {accs} |")
    lines += ["", f"Run time {result['run_seconds'] / 60:.1f} min.", ""]
    lines.append(f"![search]({png_name})")
    return "\n".join(lines) + "\n"


def _check_latency_args(args: argparse.Namespace) -> str | None:
    """Validate the latency flags before any training; returns why the converter is missing."""
    from training.search_latency import converter_missing

    if args.latency_runs < 1:
        raise ValueError(f"--latency-runs must be >= 1, got {args.latency_runs}")
    if args.latency_threads < 1:
        raise ValueError(f"--latency-threads must be >= 1, got {args.latency_threads}")
    if args.calib_images < 1:
        raise ValueError(f"--calib-images must be >= 1, got {args.calib_images}")
    if not -1.0 <= args.min_cosine <= 1.0:
        raise ValueError(f"--min-cosine must be in [-1, 1], got {args.min_cosine}")
    if args.latency_backend == "torch":
        return None
    missing = converter_missing()
    if missing and args.latency_backend == "tflite":
        raise RuntimeError(f"--latency-backend tflite needs the converter: {missing}")
    return missing


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from training.compressor import CodecConfig, wire_roundtrip
    from training.export import export_split
    from training.linkmodel import load_links
    from training.pipeline import TrainJob, loaders, run_train
    from training.search import Candidate, fewest_bits
    from training.search_latency import (
        TFLITE,
        calibration_images,
        convert_candidate,
        overall_backend,
        time_head,
        write_calibration_folder,
    )
    from training.search_plot import save_search_plot
    from wire.logjson import get_logger

    log = get_logger(__name__)

    links = load_links(args.links)  # validate inputs before any training
    params = codec_from_args(args, args.train_bits).params
    if not 1 <= args.train_bits <= 8:
        raise ValueError(f"--train-bits must be 1..8, got {args.train_bits}")
    missing = _check_latency_args(args)
    convert = args.latency_backend != "torch" and missing is None
    objectives = ("latency", "energy") if args.objective == "both" else (args.objective,)
    progress = not args.no_progress
    torch.set_num_threads(max(1, args.threads))
    t_start = time.perf_counter()

    baseline = args.baseline_acc
    if baseline is None:
        baseline = _baseline(args, progress)
        log.info("search_baseline", acc=baseline)

    grid = [(s, c, st) for s in args.splits for c in args.channels for st in args.strides]
    profiled, extra, failures = [], {}, {}
    pixels, calib_dir = None, args.out / "calibration"
    for split, ch, st in tqdm(grid, desc="search", disable=not progress):
        name = candidate_name(split, ch, st)
        job = TrainJob(
            **schedule_fields(args),
            after=split,
            channels=ch,
            stride=st,
            codec=CodecConfig(args.codec, args.train_bits, params),
            device="cpu",
        )
        res = run_train(job, args.out / name)
        net, spec, bundle = res.net, res.net.spec, res.bundle
        comp = net.compressor
        _, val_loader = loaders(bundle, args.batch_size, args.seed)
        acc_by_bits: dict[int, float] = {}
        for b in range(1, 9):  # full sweep for the report; fewest_bits reads the results
            rt = wire_roundtrip(
                spec.bottleneck_chw, spec.out_max, CodecConfig(args.codec, b, params)
            )
            acc_by_bits[b] = _accuracy_with(net, comp, rt, val_loader)
        found = fewest_bits(acc_by_bits.__getitem__, baseline, args.budget)
        within = found is not None
        bits, acc = found if within else max(acc_by_bits.items(), key=lambda kv: (kv[1], -kv[0]))
        codec = CodecConfig(args.codec, bits, params)
        nbytes = _wire_bytes(net.head, spec, codec, bundle.val, args.bytes_samples)
        export_dir = args.out / name
        exported = export_split(
            net.head,
            net.tail,
            export_dir,
            labels=list(bundle.labels),
            mean=bundle.mean,
            std=bundle.std,
            codec=codec,
            extra={"search": {"accuracy_by_bits": acc_by_bits, "baseline": baseline}},
        )
        if pixels is None:  # same dataset and seed for every candidate: calibrate once
            source = bundle.train if bundle.train is not None else bundle.val
            pixels = calibration_images(
                source, bundle.mean, bundle.std, args.calib_images, args.seed
            )
            if convert:
                write_calibration_folder(pixels, calib_dir)
        conversion = None
        if convert:
            conversion = convert_candidate(export_dir, calib_dir, args.min_cosine, progress)
        timing = time_head(
            net.head,
            pixels[:1],
            bundle.mean,
            bundle.std,
            conversion,
            args.latency_runs,
            args.latency_threads,
        )
        failure = (conversion.error if conversion else None) or timing.error
        if failure:
            failures[name] = failure
            if args.latency_backend == "tflite":
                raise RuntimeError(f"--latency-backend tflite: {name}: {failure}")
            log.info("search_conversion_failed", name=name, error=failure)
        profiled.append((split, ch, st, bits, acc, nbytes, timing))
        extra[name] = {
            "within_budget": within,
            "acc_by_bits": {str(k): v for k, v in acc_by_bits.items()},
            "bottleneck_chw": list(spec.bottleneck_chw),
            "model_id": exported.model_id,
            "export_dir": str(export_dir),
            "head_ms_torch": timing.torch_ms,
            "head_ms_tflite": timing.tflite_ms,
            "conversion": conversion.as_dict() if conversion else None,
        }
        log.info(
            "search_candidate",
            name=name,
            bits=bits,
            acc=acc,
            head_ms_torch=timing.torch_ms,
            head_ms_tflite=timing.tflite_ms,
            nbytes=nbytes,
        )

    backend, why = overall_backend(args.latency_backend, missing, failures)
    cands = []
    for split, ch, st, bits, acc, nbytes, timing in profiled:
        head_ms = timing.tflite_ms if backend == TFLITE else timing.torch_ms
        cands.append(Candidate(split, ch, st, bits, acc, head_ms, args.head_power_mw, nbytes))
        extra[candidate_name(split, ch, st)]["latency_backend"] = backend
    pool, selected_from = eligible(cands, extra, args.budget)
    for c in cands:
        extra[candidate_name(c.split, c.channels, c.stride)]["eligible"] = c in pool
    rows, chosen = cost_table(cands, links, objectives, pool)
    for r in rows:
        r.update(extra[r["name"]])
    result = {
        "data": args.data,
        "model": args.model,
        "schedule": {
            "epochs": args.epochs,
            "limit_train": args.limit_train,
            "limit_val": args.limit_val,
            "batch_size": args.batch_size,
            "lr": args.lr,
        },
        "codec": {"name": args.codec, "params": params, "train_bits": args.train_bits},
        "baseline_acc": baseline,
        "budget": args.budget,
        "latency_backend": backend,
        "latency": {
            "requested": args.latency_backend,
            "backend": backend,
            "reason": why,
            "failures": failures,
            "threads": args.latency_threads,
            "runs": args.latency_runs,
            "batch": 1,
            "calibration": {
                "images": 0 if pixels is None else int(pixels.shape[0]),
                "source": f"{args.data} training images (seeded), de-normalised to uint8 RGB",
                "folder": str(calib_dir) if convert else None,
            },
            "min_cosine": args.min_cosine,
        },
        "head_power_mw": args.head_power_mw,
        "links": {ln.name: asdict(ln) for ln in links},
        "candidates": rows,
        "chosen": chosen,
        "selected_from": selected_from,
        "run_seconds": round(time.perf_counter() - t_start, 1),
        "note": args.note,
    }
    write_json_atomic(args.results, result)
    png = args.results.with_suffix(".png")
    save_search_plot(result, png)
    write_text_atomic(args.results.with_suffix(".md"), render_md(result, png.name))
    for ln, by_obj in chosen.items():
        print(f"{ln}: " + ", ".join(f"{o} -> {n}" for o, n in by_obj.items()))
    print(f"head latency: {backend} ({why})")
    print(f"results -> {args.results} (+ .md, .png); exports -> {args.out}/<candidate>/")
    return 0
