"""Capture-side cost per frame: preprocessing and the latest-frame handoff.

Run: ``python -m benchmarks.capture`` → ``benchmarks/results/capture.json`` + ``capture.md``.

Target (issue 6): under 2 ms per frame on the development machine for 640×480 → 224×224
preprocessing, and for the handoff from the capture thread to the consumer.

What is measured, and why:

* ``preprocess``: :func:`hardware.preprocess.preprocess` on a 640×480 synthetic camera
  frame, next to two alternatives measured in the same run (plain resize-then-crop with
  Pillow, and OpenCV if installed) — the machine is shared and noisy, so only side-by-side
  ratios are meaningful.
* ``handoff_lockstep``: a producer thread and a consumer exchanging frames through
  :class:`LatestFrameSlot` one at a time — the pure synchronisation cost per frame.
* ``handoff_latest``: a producer publishing as fast as it can while the consumer takes the
  newest frame: the consumer-side cost of ``latest()`` and how old the frame it gets is.
* ``camera_30fps``: a real :class:`SyntheticCamera` at 30 fps, 640×480: the delay from
  capture timestamp to the consumer holding the frame, and ``latest()`` + ``preprocess``
  per frame, i.e. the capture-side budget the daemon actually pays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hardware.camera import CapturedFrame, LatestFrameSlot, SyntheticCamera, open_camera
from hardware.preprocess import preprocess

TARGET_US = 2000.0
RESULTS = Path(__file__).resolve().parent / "results"


def _summary(samples_s: list[float]) -> dict[str, float]:
    us = sorted(s * 1e6 for s in samples_s)
    return {
        "n": len(us),
        "min_us": round(us[0], 1),
        "p10_us": round(us[int(0.1 * (len(us) - 1))], 1),
        "median_us": round(statistics.median(us), 1),
        "mean_us": round(statistics.fmean(us), 1),
        "p90_us": round(us[int(0.9 * (len(us) - 1))], 1),
        "p99_us": round(us[int(0.99 * (len(us) - 1))], 1),
    }


def _time_interleaved(
    fns: dict[str, Any], arg: Any, n: int, chunk: int = 25
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call wall-clock and thread-CPU times for each function, in alternating chunks.

    Interleaving spreads the load other processes put on this shared machine evenly over
    the contenders, so their ratio means something even when absolute numbers wander.
    Thread CPU time is what the call itself costs: it does not grow while the thread
    waits for a core held by someone else's job, which wall-clock time does.
    """
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(5):
            fn(arg)
    done = 0
    while done < n:
        for name, fn in fns.items():
            for _ in range(min(chunk, n - done)):
                c0, t0 = time.thread_time(), time.perf_counter()
                fn(arg)
                t1, c1 = time.perf_counter(), time.thread_time()
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
        done += chunk
    return wall, cpu


def _naive_pillow(image: np.ndarray, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """The obvious way: resize the whole frame so the shorter side fits, then crop."""
    h, w = image.shape[:2]
    scale = max(size[0] / h, size[1] / w)
    rw, rh = round(w * scale), round(h * scale)
    im = Image.fromarray(image).resize((rw, rh), Image.Resampling.BILINEAR)
    left, top = (rw - size[1]) // 2, (rh - size[0]) // 2
    return np.array(im.crop((left, top, left + size[1], top + size[0])))[None]


Samples = dict[str, list[float]]  # raw per-frame seconds, kept for the plot


def bench_preprocess(n: int, samples: Samples) -> dict[str, Any]:
    frame = SyntheticCamera(width=640, height=480, seed=0).render(0)
    fns: dict[str, Any] = {
        "preprocess (pillow, default)": preprocess,
        "naive pillow resize-then-crop": _naive_pillow,
    }
    try:
        import cv2  # noqa: F401

        fns["preprocess (backend=opencv)"] = lambda image: preprocess(image, backend="opencv")
    except ImportError:
        pass
    wall, cpu = _time_interleaved(fns, frame, n)
    samples.update({f"preprocess: {name}": t for name, t in wall.items()})
    return {
        "input": "640x480x3 uint8 (synthetic camera frame)",
        "output": "1x224x224x3 uint8",
        "wall": {name: _summary(t) for name, t in wall.items()},
        "thread_cpu": {name: _summary(t) for name, t in cpu.items()},
    }


def bench_handoff_lockstep(n: int, samples: Samples) -> dict[str, Any]:
    slot = LatestFrameSlot(lockstep=True)
    image = np.zeros((480, 640, 3), np.uint8)

    def produce() -> None:
        for i in range(n):
            slot.put(CapturedFrame(image, time.monotonic(), i))

    producer = threading.Thread(target=produce)
    c0, t0 = time.process_time(), time.perf_counter()
    producer.start()
    latencies = []
    for _ in range(n):
        frame = slot.get(5.0)
        latencies.append(time.monotonic() - frame.timestamp)
    elapsed = time.perf_counter() - t0
    producer.join()
    cpu = time.process_time() - c0  # both threads: the whole cost of handing frames over
    samples["handoff: lockstep put → get"] = latencies
    return {
        "frames": n,
        "per_frame_us": round(elapsed / n * 1e6, 1),
        "cpu_per_frame_us": round(cpu / n * 1e6, 1),
        "put_to_get": _summary(latencies),
        "dropped": slot.dropped,
    }


def bench_handoff_latest(n: int, samples: Samples) -> dict[str, Any]:
    slot = LatestFrameSlot()
    image = np.zeros((480, 640, 3), np.uint8)
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            slot.put(CapturedFrame(image, time.monotonic(), i))
            i += 1
            time.sleep(0.0002)  # a fast camera, not a spin loop stealing the consumer's core

    producer = threading.Thread(target=produce)
    producer.start()
    get_cost, age = [], []
    try:
        slot.get(5.0)
        for _ in range(n):
            # Consumer busier than the producer (as with a real head): a newer frame is
            # always waiting, so this times latest() itself, not the wait for a frame.
            time.sleep(0.001)
            t0 = time.perf_counter()
            frame = slot.get(5.0)
            t1 = time.perf_counter()
            get_cost.append(t1 - t0)
            age.append(time.monotonic() - frame.timestamp)
    finally:
        stop.set()
        producer.join()
    samples["handoff: latest() with a newer frame waiting"] = get_cost
    return {
        "frames": n,
        "latest_call": _summary(get_cost),
        "frame_age_at_return": _summary(age),
        "produced": slot.published,
        "dropped": slot.dropped,
    }


def bench_camera(seconds: float, samples: Samples) -> dict[str, Any]:
    handoff, total = [], []
    with open_camera("synthetic", width=640, height=480, fps=30.0, seed=0) as cam:
        cam.latest(5.0)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            frame = cam.latest(5.0)
            got = time.monotonic()
            handoff.append(got - frame.timestamp)
            preprocess(frame.image)
            total.append(time.monotonic() - frame.timestamp)
        captured, dropped = cam.frames_captured, cam.frames_dropped
    samples["handoff: camera 30 fps capture → consumer"] = handoff
    samples["camera 30 fps capture → preprocessed"] = total
    return {
        "fps": 30.0,
        "frames_consumed": len(handoff),
        "frames_captured": captured,
        "frames_dropped": dropped,
        "capture_to_consumer": _summary(handoff),
        "capture_to_preprocessed": _summary(total),
    }


def run(n: int, seconds: float, samples: Samples | None = None) -> dict[str, Any]:
    samples = {} if samples is None else samples
    load_before = os.getloadavg()
    pre = bench_preprocess(n, samples)
    lock = bench_handoff_lockstep(n, samples)
    latest = bench_handoff_latest(n, samples)
    cam = bench_camera(seconds, samples)
    default = "preprocess (pillow, default)"
    pre_cpu = pre["thread_cpu"][default]["median_us"]
    pre_wall = pre["wall"][default]["median_us"]
    hand_wall = lock["put_to_get"]["median_us"]
    hand_cpu = lock["cpu_per_frame_us"]
    return {
        "benchmark": "capture",
        "target_us_per_frame": TARGET_US,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "pillow": Image.__version__,
            "numpy": np.__version__,
            "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "note": "shared machine (2 cores, several concurrent jobs): compare rows within one run",
        },
        "preprocess": pre,
        "handoff_lockstep": lock,
        "handoff_latest": latest,
        "camera_30fps": cam,
        "verdict": {
            "preprocess_cpu_median_us": pre_cpu,
            "preprocess_wall_median_us": pre_wall,
            "handoff_wall_median_us": hand_wall,
            "handoff_cpu_per_frame_us": hand_cpu,
            "camera_wake_median_us": cam["capture_to_consumer"]["median_us"],
            "preprocess_meets_target": pre_cpu < TARGET_US,
            "handoff_meets_target": hand_wall < TARGET_US and hand_cpu < TARGET_US,
            "rule": (
                "preprocess: thread-CPU median per frame; handoff: lockstep put→get wall "
                "median and CPU per frame. Wall-clock medians of the preprocess and of the "
                "30 fps camera wake-up are reported too; on an oversubscribed machine they "
                "measure the other jobs' share of the cores."
            ),
        },
    }


def _row(name: str, s: dict[str, float]) -> str:
    return (
        f"| {name} | {s['min_us']} | {s['p10_us']} | {s['median_us']} "
        f"| {s['p90_us']} | {s['p99_us']} |"
    )


def to_markdown(r: dict[str, Any]) -> str:
    header = [
        "| measurement | min µs | p10 µs | median µs | p90 µs | p99 µs |",
        "|---|" + "---:|" * 5,
    ]
    pre = r["preprocess"]
    lock, latest, cam = r["handoff_lockstep"], r["handoff_latest"], r["camera_30fps"]
    v = r["verdict"]
    ok = {True: "meets", False: "MISSES"}
    lines = [
        "# Capture benchmark",
        "",
        f"`python -m benchmarks.capture`. Target: < {r['target_us_per_frame']:.0f} µs per frame. "
        + r["machine"]["note"]
        + f"; 1-minute load average before/after: {r['machine']['loadavg_1m_before_after']}. "
        "When other jobs hold both cores, wall-clock distributions turn bimodal (a frame "
        "either runs at once or waits a scheduler slice of ~10 ms); thread-CPU time and the "
        "min/p10 columns show the cost of the work itself.",
        "",
        "## Preprocessing 640×480 → 1×224×224×3 uint8 (interleaved runs)",
        "",
        "Thread CPU time per frame:",
        "",
        *header,
        *(_row(name, s) for name, s in pre["thread_cpu"].items()),
        "",
        "Wall-clock per frame:",
        "",
        *header,
        *(_row(name, s) for name, s in pre["wall"].items()),
        "",
        "## Latest-frame handoff (capture thread → consumer)",
        "",
        *header,
        _row(
            f"lockstep put → get (CPU, both threads: {lock['cpu_per_frame_us']} µs/frame)",
            lock["put_to_get"],
        ),
        _row("`latest()` call with a newer frame waiting", latest["latest_call"]),
        _row("age of the frame it returns (producer ~4 kHz)", latest["frame_age_at_return"]),
        _row("synthetic camera 30 fps 640×480: capture → consumer", cam["capture_to_consumer"]),
        _row("synthetic camera 30 fps: capture → preprocessed", cam["capture_to_preprocessed"]),
        "",
        f"Camera run: {cam['frames_captured']} captured, {cam['frames_consumed']} consumed, "
        f"{cam['frames_dropped']} dropped.",
        "",
        f"Verdict: preprocess {v['preprocess_cpu_median_us']} µs CPU per frame "
        f"({ok[v['preprocess_meets_target']]} target; wall median {v['preprocess_wall_median_us']} µs), "
        f"handoff {v['handoff_wall_median_us']} µs put→get, {v['handoff_cpu_per_frame_us']} µs CPU "
        f"per frame ({ok[v['handoff_meets_target']]} target); an idle consumer woken by the 30 fps "
        f"camera holds its frame after a median {v['camera_wake_median_us']} µs.",
        "",
        f"Rule: {v['rule']}",
        "",
    ]
    return "\n".join(lines)


def plot(samples: Samples, path: Path) -> bool:
    """CDFs of per-frame times against the 2 ms target; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = (
        ("Preprocessing 640×480 → 224×224", lambda k: k.startswith("preprocess")),
        ("Capture → consumer", lambda k: not k.startswith("preprocess")),
    )
    for ax, (title, pick) in zip(axes, groups, strict=True):
        for name, values in samples.items():
            if not pick(name) or not values:
                continue
            us = np.sort(np.asarray(values) * 1e6)
            ax.step(us, np.arange(1, len(us) + 1) / len(us), where="post", label=name)
        ax.axvline(TARGET_US, color="k", linestyle="--", linewidth=1, label="2 ms target")
        ax.set_xscale("log")
        ax.set_xlabel("µs per frame (log)")
        ax.set_ylabel("fraction of frames ≤ x")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return True


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.capture", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--iterations", type=int, default=500, help="frames per micro-benchmark")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="length of the 30 fps camera run"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.iterations < 10 or args.seconds <= 0:
        print("capture benchmark: --iterations must be >= 10 and --seconds > 0", file=sys.stderr)
        return 2
    samples: Samples = {}
    result = run(args.iterations, args.seconds, samples)
    _write_atomic(args.out_dir / "capture.json", json.dumps(result, indent=2) + "\n")
    md = to_markdown(result)
    if plot(samples, args.out_dir / "capture.png"):
        md += "\n![per-frame time CDFs](capture.png)\n"
    _write_atomic(args.out_dir / "capture.md", md)
    v = result["verdict"]
    print(
        f"preprocess {v['preprocess_cpu_median_us']} µs CPU/frame, handoff "
        f"{v['handoff_wall_median_us']} µs/frame (target < {TARGET_US:.0f}) "
        f"→ {args.out_dir / 'capture.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
