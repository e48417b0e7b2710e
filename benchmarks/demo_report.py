"""The demo's report: the device's per-frame metrics as a typed summary, a table and a PNG.

Why apart from :mod:`benchmarks.demo`: the demo prepares inputs and supervises daemons; this
module only reads what the device wrote (frames.jsonl, the run summary, the power log), so
it can be re-run on a finished run's files and tested on rows without starting anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.errors import BenchError
from wire.atomicfile import write_atomic

# Stages of one frame. "frame age": how long the captured frame sat in the camera's
# latest-frame slot before the pipeline took it (the previous frame was still in flight);
# "pipeline" = pickup -> reply; "total" = capture -> reply (the daemon's latency_ms).
STAGES = ("frame age", "preprocess", "head", "encode", "network", "server", "pipeline", "total")
PIPELINE_STAGES = ("preprocess", "head", "encode", "network", "server")
SERVER_KEYS = ("server_decode_ms", "server_queue_ms", "server_compute_ms")


@dataclass(frozen=True)
class StageLatency:
    """One stage's latency over the replied frames, ms."""

    p50: float
    p99: float
    mean: float

    @classmethod
    def of(cls, values: np.ndarray) -> StageLatency:
        return cls(
            float(np.percentile(values, 50)),
            float(np.percentile(values, 99)),
            float(np.mean(values)),
        )


@dataclass
class DemoSummary:
    """What a demo run measured; :meth:`to_dict` is demo-summary.json (same keys, same order)."""

    frames: int
    replied: int
    accuracy: float | None  # top-1 over the scored frames (None: no frame carried a label)
    scored: int
    bytes_per_frame_mean: float
    latency_ms: dict[str, StageLatency] = field(default_factory=dict)  # by STAGES name
    energy_frame_mj_mean: float | None = None
    energy_head_mj_mean: float | None = None
    mean_power_w: float | None = None
    fps: float | None = None
    q85_jpeg_bytes: float | None = None  # the cloud-only baseline's bytes, when measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_frames(path: Path) -> list[dict]:
    """The device's per-frame metrics (one JSON object a line)."""
    import json

    if not path.is_file():
        raise BenchError(f"the device wrote no metrics ({path})")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _server_ms(f: dict) -> float:
    return sum(float(f.get(k) or 0.0) for k in SERVER_KEYS)


def stage_latencies(frames: list[dict]) -> dict[str, np.ndarray]:
    """Per-frame latency of each stage, ms. network = RTT minus the server's own time."""
    ok = [f for f in frames if f.get("status") == "ok" and f.get("rtt_ms") is not None]
    if not ok:
        raise BenchError("no frame received a reply; see demo-out/logs/*.log")

    def col(fn) -> np.ndarray:
        return np.array([fn(f) for f in ok], dtype=np.float64)

    return {
        "frame age": col(lambda f: f["capture_ms"]),
        "preprocess": col(lambda f: f.get("preprocess_ms", 0.0)),
        "head": col(lambda f: f["head_ms"]),
        "encode": col(lambda f: f["encode_ms"]),
        "network": col(lambda f: max(0.0, f["rtt_ms"] - _server_ms(f))),
        "server": col(_server_ms),
        "pipeline": col(lambda f: f["latency_ms"] - f["capture_ms"]),
        "total": col(lambda f: f["latency_ms"]),
    }


def summarize(frames: list[dict], summary: dict) -> DemoSummary:
    """The frames' figures plus the daemon's run summary (mean power, fps)."""
    lat = stage_latencies(frames)
    ok = [f for f in frames if f.get("status") == "ok"]
    scored = [f for f in ok if f.get("correct") is not None]
    energy = [f["energy_frame_mj"] for f in ok if f.get("energy_frame_mj") is not None]
    energy_head = [f["energy_head_mj"] for f in ok if f.get("energy_head_mj") is not None]
    return DemoSummary(
        frames=len(frames),
        replied=len(ok),
        accuracy=(sum(bool(f["correct"]) for f in scored) / len(scored)) if scored else None,
        scored=len(scored),
        bytes_per_frame_mean=float(np.mean([f["bytes"] for f in ok])),
        latency_ms={k: StageLatency.of(v) for k, v in lat.items()},
        energy_frame_mj_mean=float(np.mean(energy)) if energy else None,
        energy_head_mj_mean=float(np.mean(energy_head)) if energy_head else None,
        mean_power_w=summary.get("mean_power_w"),
        fps=summary.get("fps"),
    )


def table_rows(s: DemoSummary) -> list[tuple[str, str]]:
    """The printed table as (name, value) rows."""
    acc = "n/a" if s.accuracy is None else f"{100 * s.accuracy:.1f}% ({s.scored} frames)"
    rows = [
        ("frames replied", f"{s.replied} / {s.frames}"),
        ("top-1 accuracy (real ImageNet photos)", acc),
        ("bytes / frame on the wire", f"{s.bytes_per_frame_mean:.0f} B"),
    ]
    if s.q85_jpeg_bytes:
        jpeg = s.q85_jpeg_bytes
        rows.append(("  vs a q85 JPEG of the 224² input", f"{jpeg:.0f} B "
                     f"({jpeg / s.bytes_per_frame_mean:.0f}× more)"))  # fmt: skip
    names = {"pipeline": "pipeline (pickup -> reply)", "total": "total (capture -> reply)"}
    for k in STAGES:
        v = s.latency_ms[k]
        rows.append((f"latency {names.get(k, k)} p50/p99", f"{v.p50:.2f} / {v.p99:.2f} ms"))
    if s.energy_frame_mj_mean is not None:
        rows.append(("energy / inference (frame, sim INA226)", f"{s.energy_frame_mj_mean:.1f} mJ"))
        rows.append(("energy / inference (head only)", f"{s.energy_head_mj_mean:.1f} mJ"))
    if s.mean_power_w is not None:
        rows.append(("mean board power", f"{s.mean_power_w:.2f} W"))
    return rows


def print_table(s: DemoSummary) -> None:
    rows = table_rows(s)
    width = max(len(r[0]) for r in rows)
    print()
    print("splitfit demo — split EfficientNet-Lite0 on the simulated board")
    print("-" * (width + 24))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 24))


def q85_jpeg_bytes(camera: Path, size: int = 224) -> float | None:
    """Mean size of a quality-85 JPEG of the head's input view: the cloud-only baseline."""
    import io

    from PIL import Image

    from hardware.preprocess import preprocess

    sizes = []
    for p in sorted(camera.rglob("*.jpg")):
        with Image.open(p) as img:
            x = preprocess(np.asarray(img.convert("RGB")), size=(size, size))[0]
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=85)
        sizes.append(buf.tell())
    return float(np.mean(sizes)) if sizes else None


def load_power_trace(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The daemon's own INA226 samples (monotonic clock, same as the frame metrics)."""
    if not path.is_file():
        return None
    from hardware.powerlog import read_power_log

    log = read_power_log(path)
    if len(log.t) == 0:
        return None
    return np.asarray(log.t), np.asarray(log.power_w)


def plot(
    s: DemoSummary,
    frames: list[dict],
    trace: tuple[np.ndarray, np.ndarray] | None,
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 2]})
    left = 0.0
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, k in enumerate(PIPELINE_STAGES):
        v = s.latency_ms[k].p50
        ax1.barh(["split"], [v], left=left, color=colors[i % len(colors)], label=f"{k} {v:.1f} ms")
        left += v
    ax1.set_xlabel("latency p50 (ms)")
    ax1.set_title(f"per-stage latency, pickup -> reply (p50 {s.latency_ms['pipeline'].p50:.1f} ms)")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)
    ok = [f for f in frames if f.get("status") == "ok" and f.get("reply_mono")]
    if trace is not None and ok:
        # Streaming window only (start-up loads models and waits for the server), with each
        # frame's head inference shaded: that is where the board's power goes up.
        t0 = min(f["capture_mono"] for f in ok) - 0.2
        t1 = max(f["reply_mono"] for f in ok) + 0.2
        t, p = trace
        keep = (t >= t0) & (t <= t1)
        ax2.plot(t[keep] - t0, p[keep], lw=0.6, label="board power")
        for i, f in enumerate(ok):
            ax2.axvspan(f["head_t0"] - t0, f["head_t1"] - t0, color="C1", alpha=0.25,
                        label="head inference" if i == 0 else None)  # fmt: skip
        ax2.set_xlabel("time since the first frame (s)")
        ax2.set_ylabel("board power (W)")
        ax2.set_title("INA226 (simulated) power trace while streaming")
        ax2.legend(fontsize=8, loc="upper right")
    else:
        ok = [f for f in ok if f.get("energy_frame_mj")]
        ax2.plot([f["seq"] for f in ok], [f["energy_frame_mj"] for f in ok], "o-", ms=3)
        ax2.set_xlabel("frame")
        ax2.set_ylabel("energy per inference (mJ)")
        ax2.set_title("energy per inference (simulated INA226)")
    fig.tight_layout()
    write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
