"""Daemon benchmark: the real ``splitfit-device`` against a bare interpreter loop, side by side.

``python -m benchmarks.daemon [--seconds 120] [--fps 30] [--out benchmarks/results]``

Issue #18 items 4, 9 and 10. Head and camera are the demo's: the shipped BottleFit-split
EfficientNet-Lite0 head converted by ``convert-head`` exactly as ``splitfit-bench demo`` does
(its cache in ``demo-out/head`` is reused), and a folder camera of the demo's 20 labelled
photos (512 px and 1024 px JPEGs).

* **Side by side, one run.** The daemon (``python -m device.cli``: folder camera, INA226
  simulator sampled at 1 kHz with its power log, mock GPIO, metrics JSONL, ZeroMQ to an echo
  peer on 127.0.0.1) and a bare loop (same interpreter, same thread count, same folder camera,
  same preprocess and codec; nothing else) run *at the same time* for ``--seconds``, paced
  by the same start-of-frame schedule at ``--fps`` and 3 % slower. On a machine shared with
  other jobs, two runs one after the other see different loads; two at once see the same.
* **Memory**: peak RSS (``VmHWM``) of both processes, and RSS over time (the daemon's ring
  buffers fill over the first minute). Target: daemon ≤ bare + 15 MB.
* **Time**: per-frame pipeline (preprocess + head + encode) in the daemon against the bare
  loop's, medians. Target: ratio ≤ 1.15. The daemon's own bookkeeping per frame
  (``overhead_ms``) is reported separately, as before.
* **Where it goes**: the same side-by-side pair with ``[power] monitor = "none"`` (no sampler
  thread, no simulator) isolates the power measurement's share of memory and time.
* **fps_limit**: the daemon alone at ``fps_limit`` 2 and 10; the rate is measured from the
  frames' start times (target: within 5 %).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BARE_RATE = 0.97  # the bare loop's pace relative to the daemon's (see side_by_side)

_BARE = r"""
import json, os, resource, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from hardware.camera.folder import FolderCamera
from hardware.preprocess import preprocess
from wire.manifest import load_head_manifest
model, manifest, camera, threads, fps, seconds = sys.argv[1:7]
m = load_head_manifest(manifest)
it = Interpreter(model_path=model, num_threads=int(threads))
it.allocate_tensors()
i, o = it.get_input_details()[0], it.get_output_details()[0]
codec = m.feature_codec()
hw = tuple(int(v) for v in m.input.shape[1:3])
try:  # the daemon's camera: JPEGs decoded only as large as the head needs (issue #18)
    cam = FolderCamera(path=camera, fps=0, loop=True, labels=True, min_size=(hw[1], hw[0]))
except TypeError:  # a checkout from before that change: full-size decode, as its daemon did
    cam = FolderCamera(path=camera, fps=0, loop=True, labels=True)
cam.start()
period = 1.0 / float(fps) if float(fps) > 0 else 0.0
print("ready", flush=True)
sys.stdin.readline()  # start together with the daemon
per, head, pre = [], [], []
end = time.monotonic() + float(seconds)
due = time.monotonic()
while time.monotonic() < end:
    if period:  # the daemon's start-of-frame schedule (device.pacing)
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        now = time.monotonic()
        due = due + period if due + period > now else now + period
    f = cam.latest(5.0)
    t0 = time.perf_counter()
    x = preprocess(f.image, size=hw)
    t1 = time.perf_counter()
    it.set_tensor(i["index"], x); it.invoke()
    out = it.get_tensor(o["index"])
    t2 = time.perf_counter()
    codec.encode_int8(out)
    per.append((time.perf_counter() - t0) * 1e3); head.append((t2 - t1) * 1e3)
    pre.append((t1 - t0) * 1e3)
cam.stop()
print(json.dumps({"frames": len(per), "pipeline_ms": per[5:], "head_ms": head[5:],
                  "preprocess_ms": pre[5:],
                  "peak_rss_mb": [int(ln.split()[1]) / 1024 for ln in open("/proc/self/status")
                                  if ln.startswith("VmHWM:")][0]}))
"""


def _peer(endpoint: str) -> None:
    """Echo tail: HELLO -> WELCOME, FRAME -> REPLY at once, PING -> PONG."""
    import zmq

    from wire import protocol
    from wire.errors import ProtocolError

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    print("listening", flush=True)
    sid = 0
    while True:
        ident, *parts = sock.recv_multipart()
        try:
            msg = protocol.decode_message(parts)
        except ProtocolError:
            continue
        if isinstance(msg, protocol.Hello):
            sid += 1
            out = protocol.Welcome(sid, {}, protocol.ServerLoad())
        elif isinstance(msg, protocol.Frame):
            out = protocol.Reply(msg.session_id, msg.seq, (1, 2), (0.9, 0.1), ("c1",), 1, 1, 1)
        elif isinstance(msg, protocol.Ping):
            out = protocol.Pong(msg.session_id, msg.seq, msg.ts_us)
        else:
            continue
        sock.send_multipart([ident, *protocol.encode_message(out)])


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def prepare_head(work: Path) -> tuple[Path, Path, Path]:
    """The demo's int8 head and camera folder (reusing the demo's convert-head cache)."""
    from benchmarks.demo import DEFAULT_ARTIFACTS
    from benchmarks.harness.artifacts import DemoPaths, prepare_split

    paths = DemoPaths(work)
    tflite = prepare_split(DEFAULT_ARTIFACTS, paths, python=PY, tail=False).tflite
    return tflite, tflite.with_suffix(".json"), paths.camera


class Peer:
    """The echo peer in its own process, on a free port of 127.0.0.1."""

    def __enter__(self) -> Peer:
        from benchmarks.ports import free_port

        self.port = free_port()
        self.p = subprocess.Popen(
            [PY, "-m", "benchmarks.daemon", "--peer", f"tcp://127.0.0.1:{self.port}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.p.stdout is not None
        if self.p.stdout.readline().strip() != "listening":
            raise SystemExit("benchmarks.daemon: echo peer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.p.kill()
        self.p.wait()


def write_config(
    work: Path, name: str, tfl: Path, camera: Path, port: int, threads: int, fps: float, power: bool
) -> tuple[Path, Path, Path]:
    """A device.toml like the demo's (folder camera, sim INA226 at 1 kHz, mock GPIO), built
    from splitfit-device's own config types (benchmarks.harness.configs)."""
    from benchmarks.harness.configs import write_device_config
    from device import config as c

    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    metrics, summary = d / "frames.jsonl", d / "summary.json"
    for f in (metrics, summary, d / "power.csv"):
        f.unlink(missing_ok=True)
    config = c.DeviceConfig(
        device=c.DeviceSection(name="bench", fps_limit=fps, summary_path=summary),
        camera=c.CameraSection(
            source="folder",
            params={"path": str(camera), "loop": True, "labels": True, "fps": 0.0},
        ),
        heads=(c.HeadSection(name="bottlefit", model=tfl, num_threads=threads),),
        server=c.ServerSection(endpoints=(f"tcp://127.0.0.1:{port}",), window=1),
        power=(
            c.PowerSection(monitor="sim", rate_hz=1000.0, log_path=d / "power.csv")
            if power
            else c.PowerSection()
        ),
        gpio=c.GpioSection(status_led=17, pin_factory="mock"),
        metrics=c.MetricsSection(path=metrics, max_bytes=100_000_000),
        logging=c.LoggingSection(level="warning"),
    )
    cfg = write_device_config(d / "device.toml", config, "written by benchmarks.daemon")
    return cfg, metrics, summary


def _mem_mb(pid: int, key: str) -> float | None:
    """``VmRSS`` or ``VmHWM`` of a live process (VmHWM, not ru_maxrss: that one is carried
    over fork and exec from this benchmark process, which imported torch)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _trace(
    pids: dict[str, int], out: dict[str, list[tuple[float, float]]], hwm: dict, stop
) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        for name, pid in pids.items():
            r, h = _mem_mb(pid, "VmRSS"), _mem_mb(pid, "VmHWM")
            if r is not None:
                out.setdefault(name, []).append((round(time.monotonic() - t0, 2), r))
            if h is not None:
                hwm[name] = h
        stop.wait(0.5)


def side_by_side(
    tfl: Path,
    manifest: Path,
    camera: Path,
    work: Path,
    name: str,
    *,
    seconds: float,
    fps: float,
    threads: int,
    power: bool,
) -> dict:
    """Daemon and bare loop started together, same head/camera/pace, for ``seconds``."""
    import numpy as np

    with Peer() as peer:
        cfg, metrics, summary = write_config(
            work, name, tfl, camera, peer.port, threads, fps, power
        )
        bare_err = cfg.parent / "bare.stderr"
        # The bare loop runs 3 % slower than the daemon: two schedules at exactly the same
        # rate lock at whatever phase they started with, so one of them would meet the other's
        # frame every time (or never) for the whole run; drifting, both meet every phase, once
        # a second at 30 fps.
        bare_fps = fps * BARE_RATE
        bare = subprocess.Popen(
            [PY, "-c", _BARE, str(tfl), str(manifest), str(camera), str(threads), str(bare_fps),
             str(seconds)],
            cwd=ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=bare_err.open("w"), text=True,
        )  # fmt: skip
        assert bare.stdout is not None and bare.stdin is not None
        if bare.stdout.readline().strip() != "ready":
            raise SystemExit("benchmarks.daemon: the bare loop did not start")
        daemon = subprocess.Popen(
            [PY, "-m", "device.cli", "--config", str(cfg)],
            cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        bare.stdin.write("go\n")
        bare.stdin.flush()
        trace: dict[str, list[tuple[float, float]]] = {}
        hwm: dict[str, float] = {}
        stop = threading.Event()
        tr = threading.Thread(
            target=_trace, args=({"daemon": daemon.pid, "bare": bare.pid}, trace, hwm, stop)
        )
        tr.start()
        try:
            bare_out, _ = bare.communicate(timeout=seconds + 120)
            # the daemon started a moment later: give it the same time before SIGTERM
            time.sleep(1.0)
            d_hwm = _mem_mb(daemon.pid, "VmHWM")  # its peak while streaming, before shutdown
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=60)
        finally:
            stop.set()
            tr.join()
            for p in (bare, daemon):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if daemon.returncode != 0 or bare.returncode != 0:
            raise SystemExit(
                f"benchmarks.daemon: {name}: daemon exit {daemon.returncode}, bare exit "
                f"{bare.returncode}: {err[-2000:]}\nbare: {bare_err.read_text()[-2000:]}"
            )
    b = json.loads(bare_out.strip().splitlines()[-1])
    s = json.loads(summary.read_text())
    rows = [json.loads(ln) for ln in metrics.read_text().splitlines()]
    ok = [r for r in rows if r["status"] == "ok"][5:]
    d_pipe = np.array([r["preprocess_ms"] + r["head_ms"] + r["encode_ms"] for r in ok])
    d_head = np.array([r["head_ms"] for r in ok])
    d_pre = np.array([r["preprocess_ms"] for r in ok])
    ov = np.array([r["overhead_ms"] for r in ok if r.get("overhead_ms") is not None])
    b_pipe, b_head, b_pre = (np.array(b[k]) for k in ("pipeline_ms", "head_ms", "preprocess_ms"))
    return {
        "power_monitor": "sim (1 kHz) + power log" if power else "none",
        "seconds": seconds,
        "fps_limit": fps,
        "bare_fps": fps * BARE_RATE,
        "daemon": {
            "frames": len(rows),
            "fps": s["fps"],
            "pipeline_ms_median": float(np.median(d_pipe)),
            "pipeline_ms_p90": float(np.percentile(d_pipe, 90)),
            "head_ms_median": float(np.median(d_head)),
            "preprocess_ms_median": float(np.median(d_pre)),
            "encode_ms_median": float(np.median(d_pipe - d_head - d_pre)),
            "overhead_ms_median": float(np.median(ov)) if len(ov) else None,
            "overhead_cpu_ms_median": s.get("overhead_cpu_ms_median"),
            "peak_rss_mb": round(d_hwm or hwm["daemon"], 1),
            "summary_peak_rss_mb": s["peak_rss_mb"],
        },
        "bare": {
            "frames": b["frames"],
            "pipeline_ms_median": float(np.median(b_pipe)),
            "pipeline_ms_p90": float(np.percentile(b_pipe, 90)),
            "head_ms_median": float(np.median(b_head)),
            "preprocess_ms_median": float(np.median(b_pre)),
            "encode_ms_median": float(np.median(b_pipe - b_head - b_pre)),
            "peak_rss_mb": round(b["peak_rss_mb"], 1),
        },
        "pipeline_ratio": float(np.median(d_pipe) / np.median(b_pipe)),
        "rss_excess_mb": round((d_hwm or hwm["daemon"]) - b["peak_rss_mb"], 1),
        "rss_trace": trace,
        "_pipelines": (d_pipe.tolist(), b_pipe.tolist()),
    }


def fps_run(tfl: Path, camera: Path, work: Path, fps: float, frames: int, threads: int) -> dict:
    """The daemon alone at ``fps_limit``: the achieved rate from the frames' start times."""
    with Peer() as peer:
        cfg, metrics, _ = write_config(
            work, f"fps{fps:g}", tfl, camera, peer.port, threads, fps, power=True
        )
        p = subprocess.run(
            [PY, "-m", "device.cli", "--config", str(cfg), "--frames", str(frames)],
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=frames / fps + 120,
        )  # fmt: skip
    if p.returncode:
        raise SystemExit(f"benchmarks.daemon: fps_limit {fps}: exit {p.returncode}: {p.stderr}")
    starts = sorted(json.loads(ln)["head_t0"] for ln in metrics.read_text().splitlines())
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    return {
        "fps_limit": fps,
        "frames": len(starts),
        "measured_fps": round(rate, 4),
        "error_pct": round(100 * (rate - fps) / fps, 3),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.daemon", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--seconds", type=float, default=120.0, help="side-by-side run length")
    ap.add_argument("--variant-seconds", type=float, default=40.0, help="power=none run length")
    ap.add_argument("--fps", type=float, default=30.0, help="pace of both loops (a camera's)")
    ap.add_argument("--threads", type=int, default=2, help="interpreter threads (the demo's)")
    ap.add_argument("--work", type=Path, default=ROOT / "demo-out")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--checkout", default=None, help="label for this checkout in the results")
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="daemon.json of the same benchmark run on an older checkout, shown alongside",
    )
    ap.add_argument("--peer", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer:
        _peer(args.peer)
        return 0
    print("preparing the demo's head (convert-head, cached)...", file=sys.stderr)
    tfl, manifest, camera = prepare_head(args.work)
    runs = args.work / "bench-daemon"
    load_before = _load()
    print(f"side by side, {args.seconds:.0f} s at {args.fps:g} fps...", file=sys.stderr)
    main_run = side_by_side(
        tfl, manifest, camera, runs, "sim", seconds=args.seconds, fps=args.fps,
        threads=args.threads, power=True,
    )  # fmt: skip
    print(f"side by side without a power monitor, {args.variant_seconds:.0f} s...", file=sys.stderr)
    no_power = side_by_side(
        tfl, manifest, camera, runs, "none", seconds=args.variant_seconds, fps=args.fps,
        threads=args.threads, power=False,
    )  # fmt: skip
    print(f"side by side unpaced, {args.variant_seconds:.0f} s...", file=sys.stderr)
    unpaced = side_by_side(
        tfl, manifest, camera, runs, "unpaced", seconds=args.variant_seconds, fps=0.0,
        threads=args.threads, power=True,
    )  # fmt: skip
    print("fps_limit 2 and 10...", file=sys.stderr)
    fps = [fps_run(tfl, camera, runs, 2.0, 21, args.threads)]
    fps.append(fps_run(tfl, camera, runs, 10.0, 61, args.threads))
    load_after = _load()
    m = json.loads(manifest.read_text())
    pipes = main_run.pop("_pipelines")
    no_power.pop("_pipelines")
    unpaced.pop("_pipelines")
    result = {
        "benchmark": "daemon",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "note": (
                "shared 2-core VM, loaded by ~8 other agents' jobs (a training run among them) "
                "during the run: absolute times are noisy; daemon and bare loop ran at the "
                "same time so they saw the same load"
            ),
        },
        "head": {
            "model": "demo: BottleFit EfficientNet-Lite0 split (artifacts/efficientnet_lite0-"
            "bottlefit), convert-head int8",
            "input": m["input"]["shape"],
            "bottleneck_chw": m["bottleneck_chw"],
            "tflite_bytes": tfl.stat().st_size,
            "num_threads": args.threads,
            "codec": m["codec"],
        },
        "checkout": args.checkout,
        "camera": "folder camera of the demo's 20 photos (JPEG, 512 px and 1024 px)",
        "side_by_side": main_run,
        "side_by_side_no_power_monitor": no_power,
        "side_by_side_unpaced": unpaced,
        "fps_limit": fps,
        "targets": {"rss_excess_mb": 15, "pipeline_ratio": 1.15, "fps_error_pct": 5},
    }
    if args.before is not None:
        result["before"] = json.loads(args.before.read_text())
        result["before"].pop("before", None)
    result["pass"] = {
        "rss": main_run["rss_excess_mb"] <= 15,
        "pipeline_ratio": main_run["pipeline_ratio"] <= 1.15,
        "fps_limit": all(abs(f["error_pct"]) <= 5 for f in fps),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    from wire.atomicfile import write_json_atomic, write_text_atomic

    _plot(main_run, pipes, args.out / "daemon.png")
    for run in (main_run, no_power, unpaced):  # the JSON keeps one RSS point every 2 s
        run["rss_trace"] = {k: v[::4] for k, v in run["rss_trace"].items()}
    write_json_atomic(args.out / "daemon.json", result)
    write_text_atomic(args.out / "daemon.md", _markdown(result))
    print(json.dumps({"pass": result["pass"], "ratio": main_run["pipeline_ratio"],
                      "rss_excess_mb": main_run["rss_excess_mb"], "fps": fps}))  # fmt: skip
    return 0


def _markdown(r: dict) -> str:
    s, n = r["side_by_side"], r["side_by_side_no_power_monitor"]
    d, b = s["daemon"], s["bare"]

    def row(label: str, run: dict) -> str:
        dd, bb = run["daemon"], run["bare"]
        return (
            f"| {label} | {run['seconds']:.0f} s | {dd['frames']} / {bb['frames']} | "
            f"{dd['pipeline_ms_median']:.2f} / {bb['pipeline_ms_median']:.2f} ms | "
            f"**{run['pipeline_ratio']:.3f}** | {dd['head_ms_median']:.2f} / "
            f"{bb['head_ms_median']:.2f} ms | {dd['peak_rss_mb']:.1f} / {bb['peak_rss_mb']:.1f} MB"
            f" | **{run['rss_excess_mb']:+.1f} MB** |"
        )

    fps_rows = [
        f"| {f['fps_limit']:g} | {f['frames']} | {f['measured_fps']:.4f} | {f['error_pct']:+.3f} % |"
        for f in r["fps_limit"]
    ]
    fps_rows += [
        f"| {f['fps_limit']:g} (*{r['before'].get('checkout') or 'before'}*) | {f['frames']} | "
        f"{f['measured_fps']:.4f} | {f['error_pct']:+.3f} % |"
        for f in (r.get("before") or {}).get("fps_limit", [])
    ]
    ok = {k: ("pass" if v else "FAIL") for k, v in r["pass"].items()}
    return "\n".join(
        [
            "# Daemon benchmark (`python -m benchmarks.daemon`)",
            "",
            f"Head: {r['head']['model']}, input {r['head']['input']}, bottleneck "
            f"{r['head']['bottleneck_chw']}, {r['head']['tflite_bytes']} B, "
            f"{r['head']['num_threads']} interpreter threads, codec {r['head']['codec']}. "
            f"Camera: {r['camera']}. The daemon (INA226 simulator sampled at 1 kHz with its "
            "power log, mock GPIO, metrics, ZeroMQ to an echo peer on 127.0.0.1) and a bare "
            "loop (same interpreter, camera, preprocess and codec, nothing else) ran **at the "
            f"same time**, paced at {s['fps_limit']:g} and {s.get('bare_fps', s['fps_limit']):g} "
            "fps (3 % apart, so their frames meet at every relative phase rather than at the "
            "one they happened to start with).",
            "",
            f"Machine: {r['machine']['note']}. Load average before/after: "
            f"{r['machine']['loadavg_before']} / {r['machine']['loadavg_after']} "
            f"({r['machine']['cpus']} CPUs).",
            "",
            "| run | length | frames daemon / bare | pipeline median daemon / bare | ratio "
            "(≤ 1.15) | head median daemon / bare | peak RSS daemon / bare | excess (≤ 15 MB) |",
            "|---|---|---|---|---|---|---|---|",
            row("demo config (sim INA226 1 kHz)", s),
            row('`[power] monitor = "none"`', n),
            row("unpaced (both as fast as they go)", r["side_by_side_unpaced"]),
            *_before_rows(r, row),
            "",
            f"Pipeline = preprocess + head + encode per frame. Daemon's own bookkeeping per "
            f"frame beyond that (replies, metrics, duties, hand-off to the link thread): "
            f"{d['overhead_ms_median']:.3f} ms wall, {d['overhead_cpu_ms_median']} ms main-thread "
            f"CPU (medians). Daemon throughput {d['fps']:.2f} fps; bare loop "
            f"{b['frames'] / s['seconds']:.2f} fps.",
            "",
            "| fps_limit | frames | measured fps | error (≤ 5 %) |",
            "|---|---|---|---|",
            *fps_rows,
            "",
            f"Targets: RSS {ok['rss']}, pipeline ratio {ok['pipeline_ratio']}, "
            f"fps_limit {ok['fps_limit']}.",
            "",
            "## Where the difference went (issue #18 items 9, 10)",
            "",
            f"Components, medians daemon / bare in the demo-config run: preprocess "
            f"{d['preprocess_ms_median']:.2f} / {b['preprocess_ms_median']:.2f} ms, head "
            f"{d['head_ms_median']:.2f} / {b['head_ms_median']:.2f} ms, encode "
            f"{d['encode_ms_median']:.3f} / {b['encode_ms_median']:.3f} ms.",
            "",
            *_FINDINGS,
            "",
        ]
    )


_FINDINGS = [
    "* **Memory, before** (+32 MB over two minutes): each frame decoded at full size (the "
    "1024×683 photo is 2 MB, and three frames are alive at once: primed, in the slot, in the "
    "pipeline); the INA226 simulator's level history in Python lists (~40 B an entry, a "
    "daemon adds ~400 entries a second, up to 200,000: 26 MB after eight minutes) and 64 "
    "cached noise chunks (6 MB); the sampler's ring stored every column twice (6.4 MB, filled "
    "over the first minute at 1 kHz); the summary's deques of float objects (1.2 MB). Fixed: "
    "JPEG draft decoding at the smallest scale covering the head's input, `array('d')` history "
    "capped at 4096 changes in the daemon, 3 noise chunks, only the time column mirrored "
    "(3.7 MB), numpy rings for the summary figures (`tests/test_camera_draft.py`, "
    "`tests/test_device_memory.py`).",
    "* **Memory, what is left**: modules the bare loop does not import (gpiozero for the status "
    "LED 3.6 MB; pyzmq, the link, protocol, msgspec and config 4.8 MB), the power ring "
    "(3.7 MB at the default 65536 samples), the link and ZeroMQ threads. The peak used to be "
    "misreported too: `ru_maxrss` is carried over fork+exec, so a daemon started by a big "
    "parent reported the parent's peak; the summary now reads `VmHWM`.",
    "* **Time**: with a camera thread decoding beside it, the 1 kHz sampler of the simulated "
    "INA226 took the GIL ~1000 times a second in the middle of every frame; preprocess went "
    "from 0.65 to 1.0 ms in isolation (and 1.2 vs 0.7-0.9 ms in the daemon against the bare "
    "loop). The simulated chip is exact after the fact, so its chip, driver and sampler now run "
    "on `hardware.sim.ReplayClock`, 5-30 ms behind real time: same samples, ~40 wake-ups a "
    "second (`tests/test_sampler_replay.py`), and preprocess became equal to the bare loop's. "
    "The simulator's CPU (about 5 % of a core) then still took one of the two cores from "
    "XNNPACK's threads when a batch fell beside a head (head 3.63 vs 3.10 ms bare with the "
    "simulator, 2.52 vs 3.05 without, one run), so a batch now waits up to 20 ms for the "
    "board to go idle (`PowerMeter.busy()` marks head and encode): it runs in the gap after "
    "a frame. On a board the real driver waits in the I2C ioctl instead. Decoding JPEGs at "
    "reduced scale also cut the camera thread's CPU beside the head.",
    "* **Noise**: on this loaded machine (load average 9-20 from other agents' jobs) the ratio "
    "of medians moved between 0.90 and 1.20 over the four 120 s runs made while fixing this "
    "(1.196 with both loops at exactly 30 fps, their frames phase-locked, hence the 3 % "
    "offset; 1.125 before batches waited for idle; 0.904 with load 13-21, when the daemon "
    "could not hold 30 fps; this run). RSS moved by 0.2 MB. The before rows are not paced "
    "alike: that checkout ignored fps_limit and streamed at ~70 fps.",
]


def _before_rows(r: dict, row) -> list[str]:
    """The same runs on the checkout before the fixes (``--before``), if given."""
    b = r.get("before")
    if not b:
        return []
    what = b.get("checkout") or "before the fixes"
    out = [row(f"*{what}*: demo config", b["side_by_side"])]
    if "side_by_side_no_power_monitor" in b:
        out.append(row(f'*{what}*: `monitor = "none"`', b["side_by_side_no_power_monitor"]))
    if "side_by_side_unpaced" in b:
        out.append(row(f"*{what}*: unpaced", b["side_by_side_unpaced"]))
    return out


def _plot(run: dict, pipes: tuple[list[float], list[float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from wire.atomicfile import write_atomic

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, pts in run["rss_trace"].items():
        if pts:
            t, v = zip(*pts, strict=True)
            a1.plot(t, v, label=name)
    bare_peak = run["bare"]["peak_rss_mb"]
    a1.axhline(bare_peak + 15, color="grey", ls="--", lw=1, label="bare peak + 15 MB")
    a1.set_xlabel("s")
    a1.set_ylabel("RSS, MB")
    a1.set_title("RSS, daemon and bare loop side by side")
    a1.legend()
    a2.boxplot(list(pipes), tick_labels=["daemon", "bare"], showfliers=False)
    a2.set_ylabel("preprocess + head + encode, ms")
    a2.set_title(f"per-frame pipeline (ratio of medians {run['pipeline_ratio']:.3f})")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


if __name__ == "__main__":
    sys.exit(main())
