"""Where can EfficientNet-Lite0 be cut so that splitting pays on the device? int8 head cost per split point.

Run: ``python -m benchmarks.split_points`` → ``benchmarks/results/split_points.json`` + ``.md``
+ ``.png``.

Split computing saves device energy only when the head is much cheaper than either sending
the image or running the whole model locally. This benchmark measures, side by side in one
run, the int8 TFLite head (ai-edge-litert, the device's runtime) cut after every stage of
EfficientNet-Lite0 at 224², the full int8 model (the e2e benchmark's ``local-int8``), the
board's 224² preprocess and a quality-85 JPEG encode (the cloud-only path's device work),
and turns them into device energy per inference on BottleNet's 3G link (Table 3 radio model,
the simulated INA226 load's busy power for compute — the same accounting as ``benchmarks.e2e``).

The bottleneck's C' is chosen per split so that 1-bit codes are about as large as the shipped
split's payload (660 B); its weights are untrained, which changes neither the latency nor the
bytes of 1-bit codes. Radio energy uses 660 B for every split (and 0 B as a lower bound), so
the rows differ only in compute. The answer to "can any split reach 10× less device energy
than cloud-only on 3G?" is then arithmetic on measured times.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks import demo
from benchmarks.e2e import LINKS, RESULTS
from wire.atomicfile import write_bytes_atomic, write_text_atomic

# (split point, spatial stride s): s keeps the bottleneck grid at 7..28 cells a side
SPLITS = (
    ("stem", 4),
    ("stage1", 4),
    ("stage2", 2),
    ("stage3", 2),
    ("stage4", 1),
    ("stage5", 1),
    ("stage6", 1),
    ("stage7", 1),
)
PAYLOAD_BYTES = 660  # the shipped split's mean wire payload (1-bit zstd codes)
ENERGY_GAIN_TARGET = 10.0  # issue 13: split ≥ 10× less device energy than cloud-only on 3G
FULL = "full model"


def conv_macs(module, x) -> int:
    """Multiply-accumulates of every Conv2d/Linear in one forward pass (hooks, batch 1)."""
    import torch
    from torch import nn

    total = 0

    def hook(m, _inp, out) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += out.numel() * k
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]  # fmt: skip
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return int(total)


def channels_for(hw: tuple[int, int], stride: int, payload: int = PAYLOAD_BYTES) -> int:
    """C' whose 1-bit codes on an (h/s)×(w/s) grid are about ``payload`` bytes."""
    cells = -(-hw[0] // stride) * -(-hw[1] // stride)
    return max(1, round(payload * 8 / cells))


def build_heads(work: Path) -> list[dict]:
    """Export + convert one untrained-bottleneck head per split point (cached by file)."""
    import torch

    from converter.pipeline import ConvertOptions, convert_head
    from training.bottlefit import teacher_prefix
    from training.bottleneck import split_model
    from training.compressor import CodecConfig
    from training.export import export_split
    from training.models import create_model

    teacher = create_model("efficientnet_lite0", pretrained=True).eval()
    x = torch.zeros(1, 3, 224, 224)
    full_macs = conv_macs(teacher, x)
    rows = []
    for after, stride in SPLITS:
        with torch.no_grad():
            feat = tuple(int(v) for v in teacher_prefix(teacher, after)(x).shape[1:])
        ch = channels_for(feat[1:], stride)
        head, tail = split_model(teacher, after, ch, stride, input_size=(224, 224),
                                 model_name="efficientnet_lite0")  # fmt: skip
        d = work / f"{after}_c{ch}_s{stride}"
        tflite = d / "head.tflite"
        if not tflite.is_file():
            export_split(head, tail, d, labels=[str(i) for i in range(1000)],
                         mean=tuple(teacher.mean), std=tuple(teacher.std),
                         codec=CodecConfig("zstd", 1, {}))  # fmt: skip
            # latency only: synthetic calibration, no fidelity floor (the weights are untrained)
            opts = ConvertOptions(model=d / "head.pt", output=tflite, calib_synthetic=8,
                                  min_cosine=0.0, progress=False)  # fmt: skip
            convert_head(opts, warn=lambda _msg: None)
        rows.append({
            "split": after,
            "channels": ch,
            "stride": stride,
            "feature_chw": list(feat),
            "bottleneck_chw": list(head.spec.bottleneck_chw),  # type: ignore[attr-defined]
            "head_macs": conv_macs(head, x),
            "full_macs": full_macs,
            "tflite": str(tflite),
        })  # fmt: skip
        print(f"  {after}: C'={ch} s={stride} {rows[-1]['head_macs'] / 1e6:.0f} M MACs", flush=True)
    return rows


def time_models(paths: dict[str, Path], threads: int, rounds: int) -> dict[str, list[float]]:
    """Batch-1 invoke times, interleaved round by round so machine noise hits every model alike."""
    from ai_edge_litert.interpreter import Interpreter

    interps = {}
    for name, p in paths.items():
        it = Interpreter(model_path=str(p), num_threads=threads)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.random.default_rng(0).integers(0, 256, d["shape"], np.uint8))
        for _ in range(5):
            it.invoke()
        interps[name] = it
    times: dict[str, list[float]] = {n: [] for n in paths}
    for _ in range(rounds):
        for name, it in interps.items():
            t0 = time.perf_counter()
            it.invoke()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def device_side_costs(camera: Path, rounds: int = 3) -> dict:
    """Median 512²→224² preprocess and q85 JPEG encode on the 20 photos, and the JPEG bytes."""
    from PIL import Image

    from hardware.preprocess import preprocess

    pre, enc, nbytes = [], [], []
    for path in sorted(camera.rglob("*.jpg")):
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        for _ in range(rounds):
            t0 = time.perf_counter()
            x = preprocess(rgb, size=(224, 224))[0]
            t1 = time.perf_counter()
            buf = io.BytesIO()
            Image.fromarray(x).save(buf, format="JPEG", quality=85)
            t2 = time.perf_counter()
            pre.append((t1 - t0) * 1e3)
            enc.append((t2 - t1) * 1e3)
        nbytes.append(buf.tell())
    return {
        "preprocess_ms": statistics.median(pre),
        "jpeg_encode_ms": statistics.median(enc),
        "jpeg_bytes_mean": float(np.mean(nbytes)),
        "n_photos": len(nbytes),
    }


def energy_table(rows: list[dict], costs: dict, busy_w: float, threads: int) -> dict:
    """Per split: device energy on 3G and the gain over cloud-only; the 10× compute budget."""
    g = LINKS["3G"]
    cloud_mj = busy_w * (costs["preprocess_ms"] + costs["jpeg_encode_ms"]) + g.radio_mj(
        costs["jpeg_bytes_mean"]
    )
    budget_mj = cloud_mj / ENERGY_GAIN_TARGET
    for r in rows:
        head = r[f"head_ms_{threads}t"]
        compute = busy_w * (costs["preprocess_ms"] + head)
        radio = 0.0 if r["split"] == FULL else g.radio_mj(PAYLOAD_BYTES)
        r["energy_3g_mj"] = compute + radio
        r["energy_3g_zero_bytes_mj"] = compute
        r["gain_over_cloud_3g"] = cloud_mj / r["energy_3g_mj"]
    head_budget = budget_mj / busy_w - costs["preprocess_ms"]
    return {
        "cloud_3g_mj": cloud_mj,
        "target_gain": ENERGY_GAIN_TARGET,
        "split_energy_budget_mj": budget_mj,
        "head_ms_budget_zero_bytes": head_budget,
        "head_ms_budget_660_bytes": head_budget - g.radio_mj(PAYLOAD_BYTES) / busy_w,
        "threads": threads,
    }


def write_markdown(result: dict, path: Path) -> None:
    b, c = result["energy"], result["device_costs"]
    lines = [
        "# EfficientNet-Lite0: int8 head cost per split point (224², ai-edge-litert)",
        "",
        f"One interleaved run, {result['rounds']} rounds per model; medians. Untrained "
        f"bottleneck with C' set so 1-bit codes ≈ {PAYLOAD_BYTES} B (the shipped split's payload); "
        f"busy power {result['busy_w']} W (the simulated INA226 load); 3G radio per BottleNet "
        "Table 3. Device work per frame: preprocess "
        f"{c['preprocess_ms']:.2f} ms; cloud-only adds a q85 JPEG encode ({c['jpeg_encode_ms']:.2f} ms, "
        f"{c['jpeg_bytes_mean']:.0f} B).",
        "",
        "| split | C' | s | bottleneck | head M MACs | % of full | head ms 1 thr | head ms 2 thr "
        "| 3G energy mJ | … with 0 B | gain vs cloud |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        shape = "×".join(map(str, r.get("bottleneck_chw", []))) or "logits"
        lines.append(
            f"| {r['split']} | {r.get('channels', '')} | {r.get('stride', '')} | {shape} | "
            f"{r['head_macs'] / 1e6:.0f} | {100 * r['head_macs'] / r['full_macs']:.0f}% | "
            f"{r['head_ms_1t']:.2f} | {r['head_ms_2t']:.2f} | {r['energy_3g_mj']:.1f} | "
            f"{r['energy_3g_zero_bytes_mj']:.1f} | {r['gain_over_cloud_3g']:.1f}× |"
        )
    lines += [
        "",
        f"Energy rows use the {b['threads']}-thread head times (the device's setting). "
        f"Cloud-only on 3G: {b['cloud_3g_mj']:.1f} mJ per inference, so a {b['target_gain']:.0f}× gain "
        f"needs ≤ {b['split_energy_budget_mj']:.1f} mJ: after the preprocess that leaves "
        f"**{b['head_ms_budget_zero_bytes']:.2f} ms** of head time even if the payload were free, "
        f"**{b['head_ms_budget_660_bytes']:.2f} ms** with {PAYLOAD_BYTES} B.",
        "",
        "- " + result["verdict"],
    ]
    write_text_atomic(path, "\n".join(lines) + "\n")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["split"] for r in rows]
    x = np.arange(len(rows))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    a1.bar(x - 0.2, [r["head_ms_1t"] for r in rows], 0.4, label="1 thread")
    a1.bar(x + 0.2, [r["head_ms_2t"] for r in rows], 0.4, label="2 threads")
    a1.axhline(result["energy"]["head_ms_budget_zero_bytes"], color="k", ls="--",
               label="head budget for 10× (0 B)")  # fmt: skip
    a1.set_xticks(x, names, rotation=30)
    a1.set_ylabel("int8 head ms (batch 1)")
    a1.set_title("EfficientNet-Lite0 int8 head latency by split point")
    a1.legend()
    colours = ["tab:green" if r["split"] == FULL else "tab:orange" for r in rows]
    a2.bar(x, [r["energy_3g_mj"] for r in rows], color=colours)
    a2.bar([], [], color="tab:orange", label="split (660 B on 3G)")
    a2.bar([], [], color="tab:green", label="full int8 model, local")
    a2.axhline(result["energy"]["cloud_3g_mj"], color="tab:red", label="cloud-only")
    a2.axhline(result["energy"]["split_energy_budget_mj"], color="k", ls="--",
               label="cloud-only / 10")  # fmt: skip
    a2.set_xticks(x, names, rotation=30)
    a2.set_ylabel("device mJ per inference, 3G")
    a2.set_title("Device energy on 3G")
    a2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def verdict(result: dict) -> str:
    split_rows = [r for r in result["rows"] if r["split"] != FULL]
    best = max(split_rows, key=lambda r: r["gain_over_cloud_3g"])
    full = next(r for r in result["rows"] if r["split"] == FULL)
    ok = best["gain_over_cloud_3g"] >= ENERGY_GAIN_TARGET
    return (
        f"Best split for 3G energy: {best['split']} at {best['gain_over_cloud_3g']:.1f}× less than "
        f"cloud-only ({'meets' if ok else 'below'} the {ENERGY_GAIN_TARGET:.0f}× target). "
        f"The full int8 model runs in {full['head_ms_2t']:.2f} ms (2 threads), "
        f"{full['gain_over_cloud_3g']:.1f}× less energy than cloud-only; a split's head must "
        "cost well under that to beat running locally."
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=demo.ROOT / "demo-out" / "split-points")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.rounds < 5:
        ap.error("--rounds must be >= 5")
    from benchmarks import e2e_int8
    from hardware.sim.load import SimulatedLoad
    from training.data.photos import imagenet_labels

    args.work.mkdir(parents=True, exist_ok=True)
    calib, camera = args.work / "calib", args.work / "camera"
    demo.prepare_calibration_folder(calib)
    demo.prepare_camera_folder(camera, imagenet_labels())
    print("split heads:", flush=True)
    rows = build_heads(args.work)
    full = e2e_int8.ensure_int8_teacher(args.work, calib)
    rows.append({"split": FULL, "head_macs": rows[0]["full_macs"],
                 "full_macs": rows[0]["full_macs"], "tflite": str(full.tflite)})  # fmt: skip
    paths = {r["split"]: Path(r["tflite"]) for r in rows}
    for threads in (1, 2):
        print(f"timing, {threads} thread(s), {args.rounds} rounds", flush=True)
        times = time_models(paths, threads, args.rounds)
        for r in rows:
            r[f"head_ms_{threads}t"] = statistics.median(times[r["split"]])
            r[f"head_ms_{threads}t_min"] = min(times[r["split"]])
    costs = device_side_costs(camera)
    busy_w = SimulatedLoad().busy_w
    result = {
        "model": "efficientnet_lite0",
        "input_hw": [224, 224],
        "rounds": args.rounds,
        "busy_w": busy_w,
        "payload_bytes": PAYLOAD_BYTES,
        "device_costs": costs,
        "rows": rows,
    }
    result["energy"] = energy_table(rows, costs, busy_w, threads=2)
    result["verdict"] = verdict(result)
    for r in rows:
        r.pop("tflite", None)
    args.results.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.results / "split_points.json", json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.results / "split_points.md")
    plot(result, args.results / "split_points.png")
    print(result["verdict"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
