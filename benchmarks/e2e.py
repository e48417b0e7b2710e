"""`splitfit-bench e2e`: split vs cloud-only vs local-only over emulated links (BottleNet Table 5).

Each link of BottleNet's Table 3 (3G 1.1 Mbit/s, 4G 5.85, Wi-Fi 18.88) is a fresh Linux
network namespace whose loopback is shaped with ``tc tbf`` (netem is unavailable here; MTU
1500 or tbf stalls). Inside it, on the same 20 labeled photos:

- split: the real ``splitfit-device`` (int8 TFLite head + codec) and ``splitfit-server``
  (torch tail) processes, as in the demo;
- cloud-only: :mod:`benchmarks.e2e_cloud` — the device side JPEG-encodes (q85) the 224² input,
  the server runs the full float EfficientNet-Lite0;
- local-only: the full float model in this process (no link at all);
- local-int8: the full model converted to int8 TFLite by ``convert-head``, run in a
  device-side process with the split head's thread count (:mod:`benchmarks.e2e_int8`).

Device energy per inference = compute energy (the simulated INA226 load's busy power over the
device's compute time, which counts the same 224² preprocess in every configuration plus its
own work: head + codec, JPEG encode, or the whole model) + radio energy from BottleNet
Table 3 (P = α·throughput + β over the transfer time bytes·8/bandwidth). The server shares
the 2-core CPU with the "device", so a clearly labelled projection divides the measured
server time by a speed-up factor (30).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks import demo
from benchmarks.demo_report import load_frames
from benchmarks.harness import processes
from benchmarks.harness.artifacts import DemoPaths, PreparedSplit, prepare_split, read_json
from benchmarks.harness.errors import BenchError
from benchmarks.harness.results import write_results
from benchmarks.netns import (
    BURST_BYTES,
    LINKS,
    Link,
    NetnsUnavailable,
    ShapedNamespace,
    netns_available,
)
from benchmarks.ports import free_port

ROOT = demo.ROOT
RESULTS = ROOT / "benchmarks" / "results"


# --------------------------------------------------------------------------------------
# one configuration


def run_split(ns: ShapedNamespace, paths: DemoPaths, tflite: Path, frames: int,
              timeout: float) -> list[dict]:  # fmt: skip
    """The real daemons inside the namespace, as systemd would start them."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server_cfg = demo.write_server_config(paths, endpoint)
    device_cfg = demo.write_device_config(paths, endpoint, tflite, frames)
    for stale in (paths.metrics, paths.summary, paths.power_log):
        stale.unlink(missing_ok=True)
    env = processes.daemon_env()
    pre = ns.prefix()
    with processes.process_group() as procs:
        log = paths.logs / "server.log"
        cmd = processes.daemon_cmd("server.cli", server_cfg, prefix=pre)
        server = processes.Watched(processes.start(procs, cmd, log, env), "splitfit-server", log)
        log = paths.logs / "device.log"
        cmd = processes.daemon_cmd("device.cli", device_cfg, "--frames", str(frames), prefix=pre)
        device = processes.Watched(processes.start(procs, cmd, log, env), "splitfit-device", log)
        processes.wait_exit(device, timeout, others=[server], what=f" {frames} frames")
    return load_frames(paths.metrics)


def run_cloud(ns: ShapedNamespace, out: Path, images: Path, timeout: float) -> list[dict]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    frames = out / "cloud-frames.jsonl"
    frames.unlink(missing_ok=True)
    env = processes.daemon_env()
    cloud = [*ns.prefix(), sys.executable, "-m", "benchmarks.e2e_cloud"]
    with processes.process_group() as procs:
        log = out / "logs" / "cloud-server.log"
        server = processes.Watched(
            processes.start(procs, [*cloud, "server", "--endpoint", endpoint], log, env),
            "cloud server",
            log,
        )
        log = out / "logs" / "cloud-client.log"
        cmd = [*cloud, "client", "--endpoint", endpoint, "--images", str(images),
               "--out", str(frames)]  # fmt: skip
        client = processes.Watched(processes.start(procs, cmd, log, env), "cloud client", log)
        processes.wait_exit(client, timeout, others=[server])
    return [json.loads(line) for line in frames.read_text().splitlines() if line.strip()]


def labeled_images(camera: Path, labels: list[str]) -> list[dict]:
    index = {name: i for i, name in enumerate(labels)}
    return [{"path": str(p), "label": p.parent.name, "label_id": index[p.parent.name]}
            for p in sorted(camera.rglob("*.jpg"))]  # fmt: skip


def attach_paths(frames: list[dict], camera_images: list[dict]) -> list[dict]:
    """Name the photo behind each split frame, so agreement is scored per photo, not per label.

    Two of the 20 photos share a class (jeep), so a label cannot key the teacher's answer.
    The folder camera runs in lockstep over its files sorted by relative path, and counts
    frames from 0, so ``frame_number % len(files)`` is the file; the label it carries must
    match, else the frame is left unnamed (and not scored for agreement) rather than guessed.
    """
    out = []
    for f in frames:
        n = f.get("frame_number")
        item = (
            camera_images[n % len(camera_images)] if isinstance(n, int) and camera_images else None
        )
        if item is not None and item["label"] == f.get("label"):
            f = {**f, "path": item["path"]}
        out.append(f)
    return out


def _frame_rgb(path: str) -> np.ndarray:
    """The camera frame: decoding the file is the camera's work, not the device pipeline's."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def run_local(images: list[dict]) -> list[dict]:
    """The full float model on the 'device' (this process): no link, all compute local.

    Timed from frame pickup like splitfit-device: the 224² preprocess, then the model.
    """
    from benchmarks.e2e_cloud import classify, load_teacher
    from hardware.preprocess import preprocess

    model = load_teacher()
    classify(model, np.zeros((224, 224, 3), np.uint8))
    rows = []
    for item in images:
        frame = _frame_rgb(item["path"])
        t0 = time.perf_counter()
        rgb = preprocess(frame, size=(224, 224))[0]
        pre_ms = (time.perf_counter() - t0) * 1e3
        top, ms = classify(model, rgb)
        rows.append({**item, "top1": top, "preprocess_ms": pre_ms, "model_ms": ms,
                     "latency_ms": pre_ms + ms, "bytes": 0})  # fmt: skip
    return rows


def run_local_int8(work: Path, calib: Path, images_json: Path) -> tuple[list[dict], dict]:
    """The whole teacher as a full-int8 TFLite model (:mod:`benchmarks.e2e_int8`), run in a
    device-side process at the split head's thread count; a second pass at 1 thread is
    recorded beside it. A conversion that fails is reported, not fatal: the other rows stand."""
    from benchmarks import e2e_int8

    try:
        model = e2e_int8.ensure_int8_teacher(work, calib)
        info = model.describe()
        rows = e2e_int8.run_device_process(images_json, model, e2e_int8.DEVICE_THREADS,
                                           work / "local-int8-frames.jsonl")  # fmt: skip
        by_threads = {}
        for threads, rr in ((e2e_int8.DEVICE_THREADS, rows), (1, None)):
            if rr is None:
                rr = e2e_int8.run_device_process(images_json, model, threads,
                                                 work / f"local-int8-t{threads}.jsonl")  # fmt: skip
            by_threads[str(threads)] = {
                "model_ms_p50": _pct([r["model_ms"] for r in rr], 50),
                "latency_ms_p50": _pct([r["latency_ms"] for r in rr], 50),
            }
        info["threads"] = e2e_int8.DEVICE_THREADS
        info["by_threads"] = by_threads
        return rows, info
    except (e2e_int8.Int8Error, subprocess.SubprocessError, OSError) as exc:
        print(f"[local-int8] not measured: {exc}", flush=True)
        return [], {"error": f"not measured: {exc}"}


# --------------------------------------------------------------------------------------
# summaries


def _pct(v: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(v, dtype=np.float64), q))


LOCAL_KINDS = ("local", "local-int8")


def device_compute_ms(kind: str, row: dict) -> float:
    """The device's busy time for one frame, from pickup: the same 224² preprocess in every
    configuration (a missing ``preprocess_ms`` is an error, never a silent 0), plus what
    that configuration does next — split: int8 head + codec; cloud: the q85 JPEG encode;
    local: the whole model."""
    pre = float(row["preprocess_ms"])
    if kind == "split":
        return pre + row["head_ms"] + row["encode_ms"]
    if kind == "cloud":
        return pre + row["encode_ms"]
    if kind in LOCAL_KINDS:
        return pre + row["model_ms"]
    raise ValueError(f"unknown configuration {kind!r}")


def summarize_config(kind: str, rows: list[dict], link: Link | None, teacher: dict[str, int],
                     busy_w: float, speedup: float) -> dict:  # fmt: skip
    """One row of the Table-5-like result: bytes, latency, floor, accuracy, energy.

    ``teacher`` maps a photo's path to the float teacher's top-1 on it.
    """
    if kind == "split":
        rows = [r for r in rows if r.get("status") == "ok"]
        server = [sum(float(r.get(k) or 0.0) for k in
                      ("server_decode_ms", "server_queue_ms", "server_compute_ms"))
                  for r in rows]  # fmt: skip
        latency = [r["latency_ms"] - r["capture_ms"] for r in rows]  # pickup -> reply
        correct = [bool(r["correct"]) for r in rows if r.get("correct") is not None]
    elif kind == "cloud":
        server = [r["server_ms"] for r in rows]
        latency = [r["latency_ms"] for r in rows]
        correct = [r["top1"] == r["label_id"] for r in rows]
    elif kind in LOCAL_KINDS:
        server = [0.0 for _ in rows]
        latency = [r["latency_ms"] for r in rows]
        correct = [r["top1"] == r["label_id"] for r in rows]
    else:
        raise ValueError(f"unknown configuration {kind!r}")
    compute = [device_compute_ms(kind, r) for r in rows]
    # The floor is built per frame from that frame's own measured, disjoint parts of its
    # pickup -> reply interval (device compute, server time, the shaper's least time for
    # its payload), so every frame's latency is >= its floor and so is every percentile:
    # p50 / floor >= 1 unless a measurement is wrong (then frames_below_floor says so).
    floors = [
        c + s + (link.shaped_floor_s(float(r["bytes"]), BURST_BYTES) * 1e3 if link else 0.0)
        for c, s, r in zip(compute, server, rows, strict=True)
    ]
    agree = [r["top1"] == teacher[r["path"]] for r in rows if r.get("path") in teacher]
    nbytes = float(np.mean([r["bytes"] for r in rows])) if rows else 0.0
    wire_ms = link.transfer_s(nbytes) * 1e3 if link else 0.0
    compute_p50, server_p50 = _pct(compute, 50), _pct(server, 50)
    floor = _pct(floors, 50) if floors else 0.0
    p50 = _pct(latency, 50)
    compute_mj = busy_w * compute_p50  # W · ms = mJ
    radio_mj = link.radio_mj(nbytes) if link else 0.0
    return {
        "config": kind,
        "link": link.name if link else None,
        "frames": len(rows),
        "bytes_per_frame": nbytes,
        "latency_ms_p50": p50,
        "latency_ms_p99": _pct(latency, 99),
        "device_compute_ms_p50": compute_p50,
        "server_ms_p50": server_p50,
        "wire_ms": wire_ms,
        "floor_ms": floor,
        "floor_definition": "p50 over frames of (device compute + server time + tbf least "
        "time for the frame's payload: max(0, bytes - burst) / rate), all measured per frame",
        "frames_below_floor": sum(lat < f - 1e-9 for lat, f in zip(latency, floors, strict=True)),
        "latency_over_floor": p50 / floor if floor > 0 else None,
        "projected_latency_ms": p50 - server_p50 + server_p50 / speedup,
        "top1_accuracy": float(np.mean(correct)) if correct else None,
        "top1_agreement_with_teacher": float(np.mean(agree)) if agree else None,
        "energy_compute_mj": compute_mj,
        "energy_radio_mj": radio_mj,
        "energy_total_mj": compute_mj + radio_mj,
    }


def targets(rows: list[dict]) -> dict:
    def get(cfg: str, link: str | None) -> dict | None:
        return next((r for r in rows if r["config"] == cfg and r["link"] == link), None)

    local, local8 = get("local", None), get("local-int8", None)
    out: dict = {}
    for name in ("3G", "4G", "WiFi"):
        s, c = get("split", name), get("cloud", name)
        if not (s and c):
            continue
        entry = {
            "energy_ratio_cloud_over_split": c["energy_total_mj"] / s["energy_total_mj"],
            "split_faster_than_cloud": s["latency_ms_p50"] < c["latency_ms_p50"],
            "split_faster_than_local": bool(local)
            and s["latency_ms_p50"] < local["latency_ms_p50"],
            # None when the int8 full model was not measured (conversion failed)
            "split_faster_than_local_int8": (
                s["latency_ms_p50"] < local8["latency_ms_p50"] if local8 else None
            ),
            "split_latency_over_local_int8": (
                s["latency_ms_p50"] / local8["latency_ms_p50"] if local8 else None
            ),
            "energy_ratio_local_int8_over_split": (
                local8["energy_total_mj"] / s["energy_total_mj"] if local8 else None
            ),
            "split_latency_over_floor": s["latency_over_floor"],
            "split_agreement": s["top1_agreement_with_teacher"],
        }
        out[name] = entry
    return out


def int8_markdown(result: dict) -> list[str]:
    """How the local-int8 row's model was made, or why it is missing."""
    info = result.get("int8_full_model")
    if not isinstance(info, dict):
        return []
    if "error" in info:
        return ["", f"local-int8 (full int8 model): {info['error']}"]
    ver = info.get("verification") or {}
    cal = info.get("calibration") or {}
    lo, hi = info["output_range"]
    clo, chi = info["calib_logit_range"]
    threads = info.get("by_threads", {})
    speed = ", ".join(f"{k} thread{'s' if k != '1' else ''} {v['model_ms_p50']:.1f} ms"
                      for k, v in sorted(threads.items()))  # fmt: skip
    return [
        "",
        "local-int8: the whole EfficientNet-Lite0 teacher converted by `convert-head` (the "
        "split head's own route: folded normalisation, uint8 pixels in, full int8) and run "
        f"in a device-side process through ai-edge-litert with {info.get('threads')} threads, "
        "like the split head. Its final Linear is exported as the equivalent 1×1 conv so the "
        f"logits (int8, {(info.get('tflite_bytes') or 0) / 1e6:.1f} MB model) can take a fixed "
        f"output range [{lo:.2f}, {hi:.2f}]: the float logits' range on the "
        f"{(cal.get('images') or 0) + (cal.get('held_out') or 0)} calibration photos "
        f"([{clo:.2f}, {chi:.2f}], never the evaluation photos) padded by 25% of its span "
        f"each side. Converter verification on held-out calibration photos: cosine "
        f"{ver.get('cosine_min', float('nan')):.4f}. Model time p50 by threads: {speed}.",
    ]


def int8_verdict(result: dict) -> list[str]:
    """Say it plainly when the int8 full model on the device beats the split on latency."""
    rows = {(r["config"], r["link"]): r for r in result["rows"]}
    local8 = rows.get(("local-int8", None))
    if local8 is None:
        return []
    out = []
    for link in result["targets"]:
        s = rows.get(("split", link))
        if s is None:
            continue
        ratio = s["latency_ms_p50"] / local8["latency_ms_p50"]
        verdict = "beats the split" if ratio > 1 else "is slower than the split"
        out.append(
            f"- {link}: the int8 full model on the device ({local8['latency_ms_p50']:.1f} ms p50, "
            f"top-1 {local8['top1_accuracy']:.0%}) {verdict} ({s['latency_ms_p50']:.1f} ms, "
            f"top-1 {s['top1_accuracy']:.0%}; split/local-int8 latency {ratio:.2f}); device "
            f"energy {local8['energy_total_mj']:.1f} vs {s['energy_total_mj']:.1f} mJ."
        )
    return ["", "### Split vs the int8 full model on the device", "", *out] if out else []


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# End to end: split vs cloud-only vs local-only float / int8 (BottleNet Table 5 shape)",
        "",
        f"{result['n_images']} labeled ImageNet photos (foolbox), EfficientNet-Lite0; links: "
        "`tc tbf` on a network namespace's loopback. Latency: device pickup -> reply. "
        "Energy per inference: compute (sim INA226 busy power × device compute time) + radio "
        "(BottleNet Table 3 model). Device compute time charges every configuration the same "
        "per-frame work from frame pickup — the 224² preprocess (resize + centre crop) — plus "
        "its own: split = int8 head + feature codec, cloud = q85 JPEG encode, local = the whole "
        "model (float torch, or int8 TFLite). *Projected* latency divides the measured server time by "
        f"{result['server_speedup']:.0f} (a GPU server; a projection, not a measurement). "
        "*Floor*: for each frame, the sum of its own measured disjoint parts — device compute, "
        "server time (decode + queue + compute), and the least time the `tbf` shaper can take "
        f"for its payload (a full {BURST_BYTES}-byte bucket passes at once: max(0, bytes − "
        f"{BURST_BYTES}) × 8 / rate) — and the column is the median of those per-frame floors; "
        "a frame's latency cannot be below its floor, so p50/floor ≥ 1, and the excess is "
        "what the run did not account for (ZeroMQ, scheduling, waiting for tokens).",
        "",
        "| link | config | bytes/frame | p50 ms | p99 ms | floor ms | p50/floor | projected ms "
        "| top-1 acc | agree w/ teacher | compute mJ | radio mJ | energy mJ |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    for r in result["rows"]:
        lines.append(
            f"| {r['link'] or 'none'} | {r['config']} | {r['bytes_per_frame']:.0f} | "
            f"{r['latency_ms_p50']:.1f} | {r['latency_ms_p99']:.1f} | {r['floor_ms']:.1f} | "
            f"{f(r['latency_over_floor'], '.2f')} | {r['projected_latency_ms']:.1f} | "
            f"{f(r['top1_accuracy'], '.0%')} | {f(r['top1_agreement_with_teacher'], '.0%')} | "
            f"{r['energy_compute_mj']:.1f} | {r['energy_radio_mj']:.1f} | "
            f"{r['energy_total_mj']:.1f} |"
        )
    rec = result.get("split_model_recorded_eval")
    if rec:
        lines += [
            "",
            f"Split model's own recorded eval on these photos (artifacts metrics.json): "
            f"top-1 {rec.get('eval_top1', 0):.0%}, agreement with teacher "
            f"{rec.get('eval_top1_agreement', 0):.0%} — split accuracy here is the "
            "shipped model's quality, not the transport's.",
        ]
    lines += [
        "",
        "Timing is from a shared 2-core machine under load from other jobs; the "
        "server (cloud full model, split tail) runs on the same CPU as the 'device'.",
    ]
    lines += int8_markdown(result)
    lines += ["", "## Targets", ""]
    for link, t in result["targets"].items():
        lines.append(
            f"- {link}: cloud/split energy {t['energy_ratio_cloud_over_split']:.1f}× "
            f"(target ≥ 10× on 3G); split faster than cloud: {t['split_faster_than_cloud']}, "
            f"than local float: {t['split_faster_than_local']}, than local int8: "
            f"{f(t.get('split_faster_than_local_int8'), '')} (target on 3G/4G); split p50/floor "
            f"{f(t['split_latency_over_floor'], '.2f')} (target ≤ 1.15); agreement "
            f"{f(t['split_agreement'], '.0%')} (target ≥ 95%)"
        )
    lines += int8_verdict(result)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [f"{r['link'] or '-'}\n{r['config']}" for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(rows))
    a1.bar(x - 0.2, [r["latency_ms_p50"] for r in rows], 0.4, label="measured p50")
    a1.bar(x + 0.2, [r["floor_ms"] for r in rows], 0.4, label="physical floor")
    a1.set_xticks(x, names, fontsize=7)
    a1.set_yscale("log")
    a1.set_ylabel("latency (ms)")
    a1.legend(fontsize=8)
    a2.bar(x, [r["energy_compute_mj"] for r in rows], label="compute")
    a2.bar(x, [r["energy_radio_mj"] for r in rows],
           bottom=[r["energy_compute_mj"] for r in rows], label="radio")  # fmt: skip
    a2.set_xticks(x, names, fontsize=7)
    a2.set_yscale("log")
    a2.set_ylabel("device energy / inference (mJ)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace) -> tuple[Path, Path, DemoPaths, PreparedSplit]:
    """What every e2e row needs first: shaped links (so a run without root fails before
    converting anything) and the split model prepared as the demo prepares it."""
    reason = netns_available()
    if reason:
        raise NetnsUnavailable(reason)
    artifacts = Path(args.artifacts).resolve()
    work = Path(args.work).resolve()
    paths = DemoPaths(work)
    return artifacts, work, paths, prepare_split(artifacts, paths)


def run(args: argparse.Namespace) -> dict:
    from hardware.sim import SimulatedLoad

    artifacts, work, paths, prepared = _prepare(args)
    tflite, labels = prepared.tflite, prepared.labels
    camera_images = labeled_images(paths.camera, labels)  # what the folder camera cycles over
    images = camera_images[: args.frames]
    images_json = work / "images.json"
    images_json.write_text(json.dumps(images))
    busy_w = SimulatedLoad().busy_w  # the daemon's [power] monitor = "sim" default levels

    print("[local] full float model on the device side", flush=True)
    local = run_local(images)
    teacher = {r["path"]: r["top1"] for r in local}
    rows = [summarize_config("local", local, None, teacher, busy_w, args.speedup)]
    print("[local-int8] full int8 model (convert-head) on the device side", flush=True)
    int8_rows, int8_info = run_local_int8(work, paths.calib, images_json)
    if int8_rows:
        rows.append(summarize_config("local-int8", int8_rows, None, teacher, busy_w, args.speedup))
    for name in args.links:
        link = LINKS[name]
        with ShapedNamespace(link) as ns:
            print(f"[{name}] split (splitfit-device -> splitfit-server) in {ns.name}", flush=True)
            split = attach_paths(run_split(ns, paths, tflite, len(images), args.timeout),
                                 camera_images)  # fmt: skip
            rows.append(summarize_config("split", split, link, teacher, busy_w, args.speedup))
            print(f"[{name}] cloud-only (q85 JPEG -> full model)", flush=True)
            cloud = run_cloud(ns, work, images_json, args.timeout)
            rows.append(summarize_config("cloud", cloud, link, teacher, busy_w, args.speedup))
    recorded = artifacts / "metrics.json"
    return {
        "split_model_recorded_eval": (
            read_json(recorded).get("bottlefit") if recorded.is_file() else None
        ),
        "n_images": len(images),
        "server_speedup": args.speedup,
        "busy_w": busy_w,
        "links": {k: asdict(LINKS[k]) for k in args.links},
        "int8_full_model": int8_info,
        "rows": rows,
        "targets": targets(rows),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="splitfit-bench e2e", description=__doc__.splitlines()[0])
    p.add_argument("--links", nargs="+", default=list(LINKS), choices=list(LINKS))
    p.add_argument("--frames", type=int, default=20, help="photos per configuration (≤ 20)")
    p.add_argument("--speedup", type=float, default=30.0, help="server speed-up for projection")
    p.add_argument("--artifacts", default=str(demo.DEFAULT_ARTIFACTS))
    p.add_argument("--work", default=str(ROOT / "demo-out" / "e2e"), help="scratch folder")
    p.add_argument("--out", default=str(RESULTS), help="where e2e.json/.md/.png go")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--only", choices=("all", "adaptive"), default="all",
                   help="adaptive: only the daemon's partition choice vs each fixed partition "
                   "(benchmarks.e2e_adaptive), written to e2e.adaptive.json/.md/.png")  # fmt: skip
    # The adaptive defaults are the committed run's (benchmarks/results/e2e.adaptive.md, ~20 min).
    p.add_argument("--adaptive-frames", type=int, default=5000,
                   help="frames per adaptive run and per fixed local run (~18 s each here)")  # fmt: skip
    p.add_argument(
        "--adaptive-fixed-frames",
        type=int,
        default=150,
        help="frames per fixed split / cloud run beside the adaptive ones (the fixed local "
        "run takes --adaptive-frames: it is the one the targets compare with)",
    )
    p.add_argument("--adaptive-rounds", type=int, default=5,
                   help="rounds of every fixed and adaptive run per link, in alternating "
                   "order; a row is the median over its rounds")  # fmt: skip
    p.add_argument("--change-after-s", type=float, default=12.0,
                   help="link-change run: seconds on Wi-Fi before tc changes it to 3G, and after")  # fmt: skip
    return p


def run_adaptive(args: argparse.Namespace) -> dict:
    """``--only adaptive``: the same photos, head and tail as :func:`run`, every row a daemon."""
    from benchmarks import e2e_adaptive

    _, work, paths, prepared = _prepare(args)
    return e2e_adaptive.run(args, paths, work, prepared.tflite, prepared.labels)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1 or args.speedup <= 0:
        print("e2e: --frames must be >= 1 and --speedup > 0", file=sys.stderr)
        return 2
    if args.only == "adaptive" and args.adaptive_frames < 20:
        print("e2e: --adaptive-frames must be >= 20", file=sys.stderr)
        return 2
    if args.only == "adaptive" and args.adaptive_rounds < 1:
        print("e2e: --adaptive-rounds must be >= 1", file=sys.stderr)
        return 2
    try:
        if args.only == "adaptive":
            return _write_adaptive(run_adaptive(args), Path(args.out))
        result = run(args)
    except NetnsUnavailable as exc:
        print(f"e2e: skipped: {exc}", file=sys.stderr)
        return 0
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"e2e: {exc}", file=sys.stderr)
        return 1
    print(write_results(Path(args.out), "e2e", result, write_markdown, plot).read_text())
    return 0


def _write_adaptive(result: dict, out: Path) -> int:
    from benchmarks import e2e_adaptive

    md = write_results(out, "e2e.adaptive", result, e2e_adaptive.write_markdown, e2e_adaptive.plot)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
