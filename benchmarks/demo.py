"""`make demo`: the whole chain on the embedded default, on real photos.

    shipped split model (BottleFit EfficientNet-Lite0, artifacts/) --convert-head--> int8 head
    splitfit-server (127.0.0.1, torch tail)  <== ZeroMQ ==  splitfit-device (folder camera of
    the 20 labeled ImageNet photos foolbox ships, INA226 simulator, gpiozero MockFactory)

Both daemons run as real subprocesses, exactly as systemd would start them; this module only
prepares their inputs, starts them, stops them cleanly (also on Ctrl-C) and turns the
device's per-frame metrics into a summary table and a PNG. Re-running reuses the converted
head when its source has not changed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.ports import free_port
from wire import exitcodes
from wire.atomicfile import write_atomic, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ARTIFACTS = ROOT / "artifacts" / "efficientnet_lite0-bottlefit"
DEFAULT_OUT = ROOT / "demo-out"


class DemoError(RuntimeError):
    """Something the user can fix (missing artifacts, a daemon that failed); no traceback."""

    exit_code = exitcodes.FAILURE


class MissingArtifacts(DemoError):
    """The split model or sample photos the demo deploys are not there (wire.exitcodes: 3)."""

    exit_code = exitcodes.BAD_INPUT


@dataclass(frozen=True)
class DemoPaths:
    out: Path

    @property
    def camera(self) -> Path:
        return self.out / "camera"

    @property
    def calib(self) -> Path:
        return self.out / "calib"

    @property
    def head_dir(self) -> Path:
        return self.out / "head"

    @property
    def tail_dir(self) -> Path:
        return self.out / "tail"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics" / "frames.jsonl"

    @property
    def power_log(self) -> Path:
        return self.out / "power.csv"

    @property
    def summary(self) -> Path:
        return self.out / "run-summary.json"


# --------------------------------------------------------------------------------------
# inputs


def _safe_dirname(label: str) -> str | None:
    """A class name usable as a folder name that the folder camera reports back verbatim."""
    return None if ("/" in label or label.strip() != label or not label) else label


def prepare_camera_folder(dest: Path, labels: Sequence[str]) -> int:
    """foolbox's 20 labeled ImageNet photos as ``dest/<class name>/<file>`` (the folder
    camera turns the sub-folder into the ground-truth label the daemon scores against)."""
    from training.data.photos import shipped_photos

    photos = [p for p in shipped_photos(("foolbox",)) if p.label is not None]
    if not photos:
        raise DemoError("foolbox's ImageNet sample photos were not found (pip install foolbox)")
    n = 0
    for p in photos:
        name = _safe_dirname(labels[int(p.label)])  # type: ignore[arg-type]
        if name is None:
            continue
        target = dest / name / p.path.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p.path, target)
        n += 1
    return n


def prepare_calibration_folder(dest: Path) -> int:
    """Calibration uses the *other* shipped photos (scikit-image, scikit-learn), never the
    evaluation photos, so the reported accuracy is not measured on calibration data."""
    from training.data.photos import shipped_photos

    photos = shipped_photos(("skimage", "sklearn"))
    if not photos:
        raise DemoError("no calibration photos found (scikit-image / scikit-learn not installed)")
    dest.mkdir(parents=True, exist_ok=True)
    for p in photos:
        target = dest / f"{p.source}-{p.path.name}"
        if not target.exists():
            shutil.copyfile(p.path, target)
    return len(photos)


def _show(path: Path) -> str:
    """A path as the user would type it: relative to the checkout when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def ensure_artifacts(artifacts: Path) -> None:
    missing = [
        n
        for n in ("head.pt", "head.pt.json", "tail.pt", "tail.json")
        if not (artifacts / n).is_file()
    ]
    if missing:
        raise MissingArtifacts(
            f"split model incomplete in {artifacts}: missing {', '.join(missing)}; "
            f"see {artifacts / 'README.md'} for the training command that produces it"
        )


def convert_head(artifacts: Path, paths: DemoPaths, *, python: str) -> Path:
    """Run ``convert-head`` unless the converted head already matches the shipped source."""
    from wire.manifest import sha256_file

    tflite = paths.head_dir / "head.tflite"
    manifest = paths.head_dir / "head.json"
    source = artifacts / "head.pt"
    want_id = _read_json(artifacts / "tail.json")["model_id"]
    if tflite.is_file() and manifest.is_file():
        m = _read_json(manifest)
        if m.get("model_id") == want_id and m.get("source_sha256") == sha256_file(source):
            print(f"  int8 head up to date: {_show(tflite)}")
            return tflite
    paths.head_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        python, "-m", "converter.cli", str(source), "-o", str(tflite),
        "--calib", str(paths.calib), "--tail", str(artifacts / "tail.pt"),
    ]  # fmt: skip
    print("  $ convert-head " + " ".join(cmd[3:]))
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        raise DemoError(f"convert-head failed with exit code {proc.returncode}")
    return tflite


def prepare_tail(artifacts: Path, paths: DemoPaths) -> None:
    """The server loads a directory holding tail.pt + tail.json; link the shipped ones."""
    paths.tail_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tail.pt", "tail.json"):
        target = paths.tail_dir / name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to((artifacts / name).resolve())


def write_server_config(paths: DemoPaths, endpoint: str) -> Path:
    cfg = f"""# written by the demo
[server]
bind = ["{endpoint}"]
top_k = 5

[batching]
max_batch = 8
max_wait_us = 1000

[[models]]
path = "{paths.tail_dir}"

[metrics]
enabled = false

[log]
level = "info"
"""
    path = paths.out / "server.toml"
    path.write_text(cfg)
    return path


def write_device_config(paths: DemoPaths, endpoint: str, tflite: Path, frames: int) -> Path:
    cfg = f"""# written by the demo: folder camera of real labeled photos, INA226 simulator, mock GPIO
[device]
name = "demo-board"
max_frames = {frames}
startup_timeout_s = 60.0
drain_timeout_s = 5.0
summary_path = "{paths.summary}"

[camera]
source = "folder"

[camera.params]
path = "{paths.camera}"
loop = true
labels = true
fps = 0.0

[[heads]]
name = "bottlefit"
model = "{tflite}"
num_threads = 2

[server]
endpoints = ["{endpoint}"]
window = 1
reply_timeout_s = 30.0
hello_timeout_s = 2.0

[power]
monitor = "sim"
rate_hz = 1000.0
log_path = "{paths.power_log}"

[gpio]
status_led = 17
pin_factory = "mock"

[logging]
level = "info"
summary_interval_s = 5.0

[metrics]
path = "{paths.metrics}"
"""
    path = paths.out / "device.toml"
    path.write_text(cfg)
    return path


# --------------------------------------------------------------------------------------
# processes


@contextmanager
def process_group() -> Iterator[list[subprocess.Popen]]:
    """Every process started inside is stopped on the way out: SIGTERM, then SIGKILL."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        for p in reversed(procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _start(
    procs: list[subprocess.Popen], cmd: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
    procs.append(p)
    return p


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_daemons(
    paths: DemoPaths, tflite: Path, frames: int, *, python: str, timeout_s: float
) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server_cfg = write_server_config(paths, endpoint)
    device_cfg = write_device_config(paths, endpoint, tflite, frames)
    for stale in (paths.metrics, paths.summary, paths.power_log):
        if stale.exists():
            stale.unlink()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    with process_group() as procs:
        server = _start(
            procs,
            [python, "-m", "server.cli", "--config", str(server_cfg)],
            paths.logs / "server.log",
            env,
        )
        print(f"  splitfit-server on {endpoint} (pid {server.pid})")
        device = _start(
            procs,
            [python, "-m", "device.cli", "--config", str(device_cfg), "--frames", str(frames)],
            paths.logs / "device.log",
            env,
        )
        print(f"  splitfit-device streaming {frames} frames (pid {device.pid})")
        deadline = time.monotonic() + timeout_s
        while device.poll() is None:
            if server.poll() is not None:
                raise DemoError(
                    f"splitfit-server exited with {server.returncode}:\n"
                    + _tail(paths.logs / "server.log")
                )
            if time.monotonic() > deadline:
                raise DemoError(
                    f"splitfit-device did not finish {frames} frames in {timeout_s:.0f} s:\n"
                    + _tail(paths.logs / "device.log")
                )
            time.sleep(0.2)
        if device.returncode != 0:
            raise DemoError(
                f"splitfit-device exited with {device.returncode}:\n"
                + _tail(paths.logs / "device.log")
            )
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise DemoError("splitfit-server did not stop within 30 s of SIGTERM") from None
        if rc != 0:
            raise DemoError(f"splitfit-server exited with {rc} after SIGTERM")
    print("  both daemons stopped cleanly")


# --------------------------------------------------------------------------------------
# results


def load_frames(path: Path) -> list[dict]:
    if not path.is_file():
        raise DemoError(f"the device wrote no metrics ({path})")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Stages of one frame. "frame age": how long the captured frame sat in the camera's
# latest-frame slot before the pipeline took it (the previous frame was still in flight);
# "pipeline" = pickup -> reply; "total" = capture -> reply (the daemon's latency_ms).
STAGES = ("frame age", "preprocess", "head", "encode", "network", "server", "pipeline", "total")
PIPELINE_STAGES = ("preprocess", "head", "encode", "network", "server")


def stage_latencies(frames: list[dict]) -> dict[str, np.ndarray]:
    """Per-frame latency of each stage, ms. network = RTT minus the server's own time."""
    ok = [f for f in frames if f.get("status") == "ok" and f.get("rtt_ms") is not None]
    if not ok:
        raise DemoError("no frame received a reply; see demo-out/logs/*.log")

    def col(fn) -> np.ndarray:
        return np.array([fn(f) for f in ok], dtype=np.float64)

    def server_ms(f: dict) -> float:
        return sum(
            float(f.get(k) or 0.0)
            for k in ("server_decode_ms", "server_queue_ms", "server_compute_ms")
        )

    return {
        "frame age": col(lambda f: f["capture_ms"]),
        "preprocess": col(lambda f: f.get("preprocess_ms", 0.0)),
        "head": col(lambda f: f["head_ms"]),
        "encode": col(lambda f: f["encode_ms"]),
        "network": col(lambda f: max(0.0, f["rtt_ms"] - server_ms(f))),
        "server": col(server_ms),
        "pipeline": col(lambda f: f["latency_ms"] - f["capture_ms"]),
        "total": col(lambda f: f["latency_ms"]),
    }


def summarize(frames: list[dict], summary: dict) -> dict:
    lat = stage_latencies(frames)
    ok = [f for f in frames if f.get("status") == "ok"]
    scored = [f for f in ok if f.get("correct") is not None]
    energy = [f["energy_frame_mj"] for f in ok if f.get("energy_frame_mj") is not None]
    energy_head = [f["energy_head_mj"] for f in ok if f.get("energy_head_mj") is not None]
    return {
        "frames": len(frames),
        "replied": len(ok),
        "accuracy": (sum(bool(f["correct"]) for f in scored) / len(scored)) if scored else None,
        "scored": len(scored),
        "bytes_per_frame_mean": float(np.mean([f["bytes"] for f in ok])),
        "latency_ms": {
            k: {
                "p50": float(np.percentile(v, 50)),
                "p99": float(np.percentile(v, 99)),
                "mean": float(np.mean(v)),
            }
            for k, v in lat.items()
        },
        "energy_frame_mj_mean": float(np.mean(energy)) if energy else None,
        "energy_head_mj_mean": float(np.mean(energy_head)) if energy_head else None,
        "mean_power_w": summary.get("mean_power_w"),
        "fps": summary.get("fps"),
    }


def print_table(s: dict, image_bytes: float | None) -> None:
    acc = "n/a" if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}% ({s['scored']} frames)"
    rows = [
        ("frames replied", f"{s['replied']} / {s['frames']}"),
        ("top-1 accuracy (real ImageNet photos)", acc),
        ("bytes / frame on the wire", f"{s['bytes_per_frame_mean']:.0f} B"),
    ]
    if image_bytes:
        rows.append(("  vs a q85 JPEG of the 224² input", f"{image_bytes:.0f} B "
                     f"({image_bytes / s['bytes_per_frame_mean']:.0f}× more)"))  # fmt: skip
    names = {"pipeline": "pipeline (pickup -> reply)", "total": "total (capture -> reply)"}
    for k in STAGES:
        v = s["latency_ms"][k]
        rows.append((f"latency {names.get(k, k)} p50/p99", f"{v['p50']:.2f} / {v['p99']:.2f} ms"))
    if s["energy_frame_mj_mean"] is not None:
        rows.append(
            ("energy / inference (frame, sim INA226)", f"{s['energy_frame_mj_mean']:.1f} mJ")
        )
        rows.append(("energy / inference (head only)", f"{s['energy_head_mj_mean']:.1f} mJ"))
    if s["mean_power_w"] is not None:
        rows.append(("mean board power", f"{s['mean_power_w']:.2f} W"))
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
    s: dict, frames: list[dict], trace: tuple[np.ndarray, np.ndarray] | None, out: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 2]})
    parts = PIPELINE_STAGES
    left = 0.0
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, k in enumerate(parts):
        v = s["latency_ms"][k]["p50"]
        ax1.barh(["split"], [v], left=left, color=colors[i % len(colors)], label=f"{k} {v:.1f} ms")
        left += v
    ax1.set_xlabel("latency p50 (ms)")
    ax1.set_title(
        f"per-stage latency, pickup -> reply (p50 {s['latency_ms']['pipeline']['p50']:.1f} ms)"
    )
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


# --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from training.data.photos import imagenet_labels

    paths = DemoPaths(Path(args.out).resolve())
    artifacts = Path(args.artifacts).resolve()
    python = sys.executable
    paths.out.mkdir(parents=True, exist_ok=True)

    print("[1/4] split model")
    ensure_artifacts(artifacts)
    labels = _read_json(artifacts / "tail.json")["labels"] or imagenet_labels()
    n_photos = prepare_camera_folder(paths.camera, labels)
    n_calib = prepare_calibration_folder(paths.calib)
    print(f"  {_show(artifacts)}: "
          f"{n_photos} labeled camera photos, {n_calib} calibration photos")  # fmt: skip

    print("[2/4] convert the head to full int8 (convert-head)")
    tflite = convert_head(artifacts, paths, python=python)
    prepare_tail(artifacts, paths)

    print("[3/4] stream through splitfit-device -> splitfit-server")
    run_daemons(paths, tflite, args.frames, python=python, timeout_s=args.timeout)

    print("[4/4] results")
    frames = load_frames(paths.metrics)
    summary = _read_json(paths.summary) if paths.summary.is_file() else {}
    s = summarize(frames, summary)
    s["q85_jpeg_bytes"] = q85_jpeg_bytes(paths.camera)
    print_table(s, s["q85_jpeg_bytes"])
    png = paths.out / "demo.png"
    plot(s, frames, load_power_trace(paths.power_log), png)
    result = paths.out / "demo-summary.json"
    write_json_atomic(result, s)
    print(f"\nwrote {_show(png)} and {_show(result)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="splitfit-bench demo",
        description="End-to-end demo: simulated board + local tail server on real photos.",
    )
    p.add_argument("--frames", type=int, default=40, help="frames to stream (default 40)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default demo-out/)")
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS), help="split model folder")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1:
        print("demo: --frames must be >= 1", file=sys.stderr)
        return exitcodes.USAGE
    try:
        return run(args)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ndemo: interrupted; every process it started was stopped", file=sys.stderr)
        return exitcodes.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
