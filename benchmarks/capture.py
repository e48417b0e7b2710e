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
        "median_us": round(statistics.median(us), 1),
        "mean_us": round(statistics.fmean(us), 1),
        "p90_us": round(us[int(0.9 * (len(us) - 1))], 1),
        "p99_us": round(us[int(0.99 * (len(us) - 1))], 1),
    }


def _time_interleaved(
    fns: dict[str, Any], arg: Any, n: int, chunk: int = 25
) -> dict[str, list[float]]:
    """Per-call times for each function, run in alternating chunks.

    Interleaving spreads the load other processes put on this shared machine evenly over
    the contenders, so their ratio means something even when absolute numbers wander.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(5):
            fn(arg)
    done = 0
    while done < n:
        for name, fn in fns.items():
            for _ in range(min(chunk, n - done)):
                t0 = time.perf_counter()
                fn(arg)
                times[name].append(time.perf_counter() - t0)
        done += chunk
    return times


def _naive_pillow(image: np.ndarray, size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """The obvious way: resize the whole frame so the shorter side fits, then crop."""
    h, w = image.shape[:2]
    scale = max(size[0] / h, size[1] / w)
    rw, rh = round(w * scale), round(h * scale)
    im = Image.fromarray(image).resize((rw, rh), Image.Resampling.BILINEAR)
    left, top = (rw - size[1]) // 2, (rh - size[0]) // 2
    return np.array(im.crop((left, top, left + size[1], top + size[0])))[None]


def bench_preprocess(n: int) -> dict[str, Any]:
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
    times = _time_interleaved(fns, frame, n)
    return {
        "input": "640x480x3 uint8 (synthetic camera frame)",
        "output": "1x224x224x3 uint8",
        **{name: _summary(samples) for name, samples in times.items()},
    }


def bench_handoff_lockstep(n: int) -> dict[str, Any]:
    slot = LatestFrameSlot(lockstep=True)
    image = np.zeros((480, 640, 3), np.uint8)

    def produce() -> None:
        for i in range(n):
            slot.put(CapturedFrame(image, time.monotonic(), i))

    producer = threading.Thread(target=produce)
    t0 = time.perf_counter()
    producer.start()
    latencies = []
    for _ in range(n):
        frame = slot.get(5.0)
        latencies.append(time.monotonic() - frame.timestamp)
    elapsed = time.perf_counter() - t0
    producer.join()
    return {
        "frames": n,
        "per_frame_us": round(elapsed / n * 1e6, 1),
        "put_to_get": _summary(latencies),
        "dropped": slot.dropped,
    }


def bench_handoff_latest(n: int) -> dict[str, Any]:
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
    return {
        "frames": n,
        "latest_call": _summary(get_cost),
        "frame_age_at_return": _summary(age),
        "produced": slot.published,
        "dropped": slot.dropped,
    }


def bench_camera(seconds: float) -> dict[str, Any]:
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
    return {
        "fps": 30.0,
        "frames_consumed": len(handoff),
        "frames_captured": captured,
        "frames_dropped": dropped,
        "capture_to_consumer": _summary(handoff),
        "capture_to_preprocessed": _summary(total),
    }


def run(n: int, seconds: float) -> dict[str, Any]:
    load_before = os.getloadavg()
    pre = bench_preprocess(n)
    lock = bench_handoff_lockstep(n)
    latest = bench_handoff_latest(n)
    cam = bench_camera(seconds)
    pre_us = pre["preprocess (pillow, default)"]["median_us"]
    handoff_us = cam["capture_to_consumer"]["median_us"]
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
            "preprocess_median_us": pre_us,
            "handoff_median_us": handoff_us,
            "preprocess_meets_target": pre_us < TARGET_US,
            "handoff_meets_target": handoff_us < TARGET_US,
        },
    }


def to_markdown(r: dict[str, Any]) -> str:
    pre = r["preprocess"]
    lines = [
        "# Capture benchmark",
        "",
        f"Target: < {r['target_us_per_frame']:.0f} µs per frame. {r['machine']['note']}; "
        f"1-minute load average before/after: {r['machine']['loadavg_1m_before_after']}.",
        "",
        "## Preprocessing 640×480 → 1×224×224×3 uint8",
        "",
        "| method | median µs | p90 µs | p99 µs |",
        "|---|---:|---:|---:|",
    ]
    for name, s in pre.items():
        if isinstance(s, dict):
            lines.append(f"| {name} | {s['median_us']} | {s['p90_us']} | {s['p99_us']} |")
    lock, latest, cam = r["handoff_lockstep"], r["handoff_latest"], r["camera_30fps"]
    lines += [
        "",
        "## Latest-frame handoff (capture thread → consumer)",
        "",
        "| measurement | median µs | p90 µs | p99 µs |",
        "|---|---:|---:|---:|",
        f"| lockstep put → get ({lock['frames']} frames, {lock['per_frame_us']} µs/frame overall) "
        f"| {lock['put_to_get']['median_us']} | {lock['put_to_get']['p90_us']} | {lock['put_to_get']['p99_us']} |",
        f"| `latest()` call with a newer frame waiting | {latest['latest_call']['median_us']} "
        f"| {latest['latest_call']['p90_us']} | {latest['latest_call']['p99_us']} |",
        f"| age of the frame it returns (producer ~4 kHz) | {latest['frame_age_at_return']['median_us']} "
        f"| {latest['frame_age_at_return']['p90_us']} | {latest['frame_age_at_return']['p99_us']} |",
        f"| synthetic camera 30 fps 640×480: capture → consumer "
        f"| {cam['capture_to_consumer']['median_us']} | {cam['capture_to_consumer']['p90_us']} "
        f"| {cam['capture_to_consumer']['p99_us']} |",
        f"| synthetic camera 30 fps: capture → preprocessed "
        f"| {cam['capture_to_preprocessed']['median_us']} | {cam['capture_to_preprocessed']['p90_us']} "
        f"| {cam['capture_to_preprocessed']['p99_us']} |",
        "",
        f"Camera run: {cam['frames_captured']} captured, {cam['frames_consumed']} consumed, "
        f"{cam['frames_dropped']} dropped.",
        "",
        f"Verdict: preprocess {r['verdict']['preprocess_median_us']} µs "
        f"({'meets' if r['verdict']['preprocess_meets_target'] else 'MISSES'} target), "
        f"handoff {r['verdict']['handoff_median_us']} µs "
        f"({'meets' if r['verdict']['handoff_meets_target'] else 'MISSES'} target).",
        "",
    ]
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
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
    result = run(args.iterations, args.seconds)
    _write_atomic(args.out_dir / "capture.json", json.dumps(result, indent=2) + "\n")
    _write_atomic(args.out_dir / "capture.md", to_markdown(result))
    v = result["verdict"]
    print(
        f"preprocess {v['preprocess_median_us']} µs/frame, handoff {v['handoff_median_us']} µs/frame "
        f"(target < {TARGET_US:.0f}) → {args.out_dir / 'capture.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
