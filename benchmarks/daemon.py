"""Daemon benchmark: per-frame overhead beyond head + encode, and peak RSS.

``python -m benchmarks.daemon [--frames 300] [--out benchmarks/results]``

What is measured (issue 7 targets: overhead <= 0.5 ms median, peak RSS <= 80 MB with a
ResNet-18 head at 224x224):

* A ResNet-18 split head (stem + rb1..rb2 + BottleNet reduction to 8 channels, stride 2,
  224x224 input) is exported by ``training.export`` and converted to full-int8 TFLite by the
  real ``convert-head`` (subprocesses; weights are random — latency and memory depend on the
  architecture, not the values). If the converter is unavailable the benchmark stops and
  says so rather than measuring something else.
* The real daemon (``python -m device.cli --frames N``) runs that head against an echo
  ROUTER peer on 127.0.0.1 (replies at once, so the link is never the bottleneck). The
  daemon reports per frame ``overhead_ms`` = the main-loop iteration's wall time minus
  blocking waits (camera, in-flight window) minus preprocess, head and encode — i.e. the
  daemon's own bookkeeping: replies, metrics, duties, hand-off to the link thread — and its
  peak RSS (``ru_maxrss``) in the run summary.
* Side by side, in one run: a bare process that only loads the same interpreter and runs
  it (peak RSS floor for "numpy + LiteRT + this model"), and a bare tight loop of
  preprocess + head + encode for the same frames (what the daemon adds on throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

_EXPORT = r"""
import sys, torch
from training.models.registry import create_model
from training.bottleneck import split_model
from training.export import export_split
from training.compressor import CodecConfig
torch.manual_seed(0)
m = create_model("resnet18", num_classes=1000)
head, tail = split_model(m, "rb2", channels=8, stride=2, input_size=(224, 224))
head.eval(); tail.eval()
export_split(head, tail, sys.argv[1], labels=[f"c{i}" for i in range(1000)],
             mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
             codec=CodecConfig("jpeg", 8, {"quality": 20}))
"""

_BARE = r"""
import json, resource, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from hardware.camera import SyntheticCamera
from hardware.preprocess import preprocess
from wire.manifest import load_head_manifest
model, manifest, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = load_head_manifest(manifest)
it = Interpreter(model_path=model, num_threads=threads)
it.allocate_tensors()
i, o = it.get_input_details()[0], it.get_output_details()[0]
codec = m.feature_codec()
cam = SyntheticCamera(width=320, height=240, fps=None, seed=1)
frames = [cam.render(k) for k in range(8)]
per = []
for k in range(n):
    t0 = time.perf_counter()
    x = preprocess(frames[k % 8], size=tuple(m.input.shape[1:3]))
    it.set_tensor(i["index"], x); it.invoke()
    codec.encode_int8(it.get_tensor(o["index"]))
    per.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"per_frame_ms_median": float(np.median(per[5:])),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _peer(endpoint: str) -> None:
    """Echo tail: HELLO -> WELCOME, FRAME -> REPLY at once, PING -> PONG."""
    import zmq

    from wire.errors import ProtocolError
    from wire.protocol import (
        Frame,
        Hello,
        Ping,
        Pong,
        Reply,
        ServerLoad,
        Welcome,
        decode_message,
        encode_message,
    )

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    print("listening", flush=True)
    sid = 0
    while True:
        ident, *parts = sock.recv_multipart()
        try:
            msg = decode_message(parts)
        except ProtocolError:
            continue
        if isinstance(msg, Hello):
            sid += 1
            out = Welcome(sid, {}, ServerLoad())
        elif isinstance(msg, Frame):
            out = Reply(msg.session_id, msg.seq, (1, 2), (0.9, 0.1), ("c1",), 1, 1, 1)
        elif isinstance(msg, Ping):
            out = Pong(msg.session_id, msg.seq, msg.ts_us)
        else:
            continue
        sock.send_multipart([ident, *encode_message(out)])


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, **kw)


def build_resnet18_head(work: Path) -> tuple[Path, Path, str]:
    split = work / "split"
    tfl = split / "head.tflite"
    if not tfl.exists():
        p = _run([PY, "-c", _EXPORT, str(split)], timeout=900)
        if p.returncode:
            raise SystemExit(f"benchmarks.daemon: export failed: {p.stderr[-2000:]}")
        p = _run(
            [
                PY,
                "-m",
                "converter.cli",
                str(split / "head.pt"),
                "-o",
                str(tfl),
                "--calib-synthetic",
                "16",
                "--input-size",
                "224",
                "224",
                "--no-progress",
            ],
            timeout=1800,
        )
        if p.returncode:
            raise SystemExit(f"benchmarks.daemon: convert-head failed: {p.stderr[-2000:]}")
    return tfl, split / "head.json", "convert-head (torch -> ONNX -> onnx2tf -> TFLite int8)"


def run_daemon(work: Path, tfl: Path, frames: int, threads: int, port: int) -> dict:
    cfg = work / "bench.toml"
    metrics = work / "frames.jsonl"
    metrics.unlink(missing_ok=True)
    cfg.write_text(
        '[device]\nname = "bench"\n'
        '[camera]\nsource = "synthetic"\n[camera.params]\nwidth = 320\nheight = 240\n'
        f'[[heads]]\nmodel = "{tfl}"\nnum_threads = {threads}\n'
        f'[server]\nendpoints = ["tcp://127.0.0.1:{port}"]\nwindow = 4\n'
        f'[metrics]\npath = "{metrics}"\nmax_bytes = 100000000\n'
        '[logging]\nlevel = "warning"\n'
    )
    summary = work / "summary.json"
    p = _run(
        [
            PY,
            "-m",
            "device.cli",
            "--config",
            str(cfg),
            "--frames",
            str(frames),
            "--summary",
            str(summary),
        ],
        timeout=1800,
    )
    if p.returncode:
        raise SystemExit(f"benchmarks.daemon: daemon failed ({p.returncode}): {p.stderr[-2000:]}")
    rows = [json.loads(ln) for ln in metrics.read_text().splitlines()]
    return {"summary": json.loads(summary.read_text()), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.daemon", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/splitfit-bench-daemon"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--peer", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer:
        _peer(args.peer)
        return 0
    import numpy as np

    args.work.mkdir(parents=True, exist_ok=True)
    print("building the ResNet-18 head (export + convert-head)...", file=sys.stderr)
    tfl, manifest, how = build_resnet18_head(args.work)

    from benchmarks.ports import free_port

    port = free_port()
    peer = subprocess.Popen(
        [PY, "-m", "benchmarks.daemon", "--peer", f"tcp://127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None and peer.stdout.readline().strip() == "listening"
        print(f"running the daemon for {args.frames} frames...", file=sys.stderr)
        t0 = time.monotonic()
        d = run_daemon(args.work, tfl, args.frames, args.threads, port)
        daemon_wall = time.monotonic() - t0
    finally:
        peer.kill()
        peer.wait()
    bare = _run(
        [PY, "-c", _BARE, str(tfl), str(manifest), str(args.frames), str(args.threads)],
        timeout=1800,
    )
    if bare.returncode:
        raise SystemExit(f"benchmarks.daemon: bare loop failed: {bare.stderr[-2000:]}")
    bare_r = json.loads(bare.stdout.strip().splitlines()[-1])

    rows = [r for r in d["rows"] if r["status"] == "ok" and r.get("overhead_ms") is not None]
    ov = np.array([r["overhead_ms"] for r in rows])
    ov_cpu = np.array([r["overhead_cpu_ms"] for r in rows])
    head = np.array([r["head_ms"] for r in rows])
    enc = np.array([r["encode_ms"] for r in rows])
    pre = np.array([r["preprocess_ms"] for r in rows])
    s = d["summary"]
    m = json.loads(manifest.read_text())
    result = {
        "benchmark": "daemon",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "shared 2-core VM, other jobs running: absolute times are noisy",
        },
        "head": {
            "model": "resnet18 split after rb2, BottleNet reduction C'=8 stride 2",
            "input": m["input"]["shape"],
            "bottleneck_chw": m["bottleneck_chw"],
            "tflite_bytes": tfl.stat().st_size,
            "built_with": how,
            "num_threads": args.threads,
            "codec": m["codec"],
        },
        "frames": len(rows),
        "overhead_ms": {
            "median": float(np.median(ov)),
            "p90": float(np.percentile(ov, 90)),
            "p99": float(np.percentile(ov, 99)),
            "mean": float(ov.mean()),
        },
        "overhead_cpu_ms": {
            "median": float(np.median(ov_cpu)),
            "p90": float(np.percentile(ov_cpu, 90)),
            "mean": float(ov_cpu.mean()),
        },
        "link_thread_cpu_ms_per_frame": s["link_cpu_ms_per_frame"],
        "head_ms_median": float(np.median(head)),
        "encode_ms_median": float(np.median(enc)),
        "preprocess_ms_median": float(np.median(pre)),
        "bytes_median": float(np.median([r["bytes"] for r in rows])),
        "rtt_ms_median": float(np.median([r["rtt_ms"] for r in rows])),
        "daemon_fps": s["fps"],
        "daemon_wall_s": round(daemon_wall, 2),
        "peak_rss_mb": s["peak_rss_mb"],
        "bare_interpreter": bare_r,
        "targets": {"overhead_ms_median": 0.5, "peak_rss_mb": 80},
    }
    result["pass"] = {
        "overhead_cpu": result["overhead_cpu_ms"]["median"] <= 0.5,
        "overhead_wall": result["overhead_ms"]["median"] <= 0.5,
        "rss": result["peak_rss_mb"] <= 80,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "daemon.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "daemon.md").write_text(_markdown(result))
    _plot(ov, head, enc, pre, args.out / "daemon.png")
    print(
        json.dumps(
            {k: result[k] for k in ("overhead_cpu_ms", "overhead_ms", "peak_rss_mb", "pass")}
        )
    )
    return 0


def _markdown(r: dict) -> str:
    o = r["overhead_ms"]
    c = r["overhead_cpu_ms"]
    lk = r["link_thread_cpu_ms_per_frame"]
    lk = f"{lk:.3f}" if lk is not None else "n/a"
    b = r["bare_interpreter"]
    return "\n".join(
        [
            "# Daemon benchmark (`python -m benchmarks.daemon`)",
            "",
            f"Head: {r['head']['model']}, input {r['head']['input']}, bottleneck "
            f"{r['head']['bottleneck_chw']}, {r['head']['tflite_bytes']} B TFLite, built with "
            f"{r['head']['built_with']}; {r['head']['num_threads']} interpreter threads; codec "
            f"{r['head']['codec']}. {r['frames']} frames against an echo ROUTER on 127.0.0.1. "
            f"Machine: {r['machine']['note']}.",
            "",
            "| metric | value | target |",
            "|---|---|---|",
            f"| overhead per frame, main-thread CPU, median | {c['median']:.3f} ms | ≤ 0.5 ms |",
            f"| overhead per frame, main-thread CPU, p90 | {c['p90']:.3f} ms | |",
            f"| link thread CPU per frame (send, reply, heartbeats), mean | {lk} ms | |",
            f"| overhead per frame, wall clock, median | {o['median']:.3f} ms | ≤ 0.5 ms |",
            f"| overhead per frame, wall clock, p90 / p99 | {o['p90']:.3f} / {o['p99']:.3f} ms | |",
            f"| head inference, median | {r['head_ms_median']:.2f} ms | |",
            f"| encode, median | {r['encode_ms_median']:.3f} ms | |",
            f"| preprocess (320×240 → 224×224), median | {r['preprocess_ms_median']:.3f} ms | |",
            f"| payload, median | {r['bytes_median']:.0f} B | |",
            f"| RTT to echo peer, median | {r['rtt_ms_median']:.3f} ms | |",
            f"| daemon peak RSS | {r['peak_rss_mb']:.1f} MB | ≤ 80 MB |",
            f"| bare interpreter loop peak RSS (floor) | {b['peak_rss_mb']:.1f} MB | |",
            f"| bare preprocess+head+encode per frame | {b['per_frame_ms_median']:.2f} ms | |",
            f"| daemon throughput | {r['daemon_fps']:.1f} fps | |",
            "",
            "Overhead = main-loop iteration − camera/window waits − preprocess − head − encode "
            "(reply handling, metrics JSONL, duties, hand-off to the link thread). The CPU-time "
            "rows count only the main thread's CPU (`time.thread_time`), immune to preemption by "
            "the other jobs on this shared VM; the wall-clock rows are not (their tail is time "
            "spent runnable but not running, including GIL hand-offs with the camera and link "
            "threads, whose switch interval is 5 ms). The link thread's CPU per frame is "
            "listed separately.",
            "",
        ]
    )


def _plot(ov, head, enc, pre, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 3.5))
    parts = [("preprocess", pre), ("head", head), ("encode", enc), ("daemon overhead", ov)]
    ax.boxplot([p for _, p in parts], tick_labels=[n for n, _ in parts], showfliers=False)
    ax.set_ylabel("ms per frame")
    ax.set_yscale("log")
    ax.set_title("splitfit-device per-frame time, ResNet-18 head @224")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
