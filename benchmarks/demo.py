"""`make demo`: the whole chain on the embedded default, on real photos.

    shipped split model (BottleFit EfficientNet-Lite0 cut after stage3, artifacts/) --convert-head--> int8 head
    splitfit-server (127.0.0.1, torch tail)  <== ZeroMQ ==  splitfit-device (folder camera of
    the 20 labeled ImageNet photos foolbox ships, INA226 simulator, gpiozero MockFactory)

Both daemons run as real subprocesses, exactly as systemd would start them. This module is
the demo's sequence and its two configs; the steps are shared with the other benchmarks that
run the daemons: :mod:`benchmarks.harness` prepares the inputs (re-running reuses the
converted head when its source has not changed), writes the configs from the daemons' own
config types and supervises the processes (stopping them cleanly, also on Ctrl-C), and
:mod:`benchmarks.demo_report` turns the device's per-frame metrics into the summary table,
demo-summary.json and a PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.demo_report import (
    load_frames,
    load_power_trace,
    plot,
    print_table,
    q85_jpeg_bytes,
    summarize,
)
from benchmarks.harness import configs, processes
from benchmarks.harness.artifacts import (
    DemoPaths,
    convert_head,
    ensure_artifacts,
    prepare_calibration_folder,
    prepare_camera_folder,
    prepare_tail,
    read_json,
    show,
    split_labels,
)
from benchmarks.harness.errors import BenchError, MissingArtifacts
from benchmarks.ports import free_port
from wire import exitcodes
from wire.atomicfile import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
# The split after stage4 trained on the ImageNet sample + the Debian photo corpus, zstd_dict
# (issue 19): the least held-out top-1 loss within 690 B/frame (benchmarks/results/frontier.md);
# its int8 head costs about 0.6x the full int8 model. The stage3 split (0.5x, 8 points more
# loss) and the stage6 one (artifacts/efficientnet_lite0-bottlefit, for the entropy-coder
# benchmarks) stay for reference.
DEFAULT_ARTIFACTS = ROOT / "artifacts" / "efficientnet_lite0-bottlefit-stage4"
DEFAULT_OUT = ROOT / "demo-out"

DemoError = BenchError  # what the demo (and the benchmarks built on it) raise and catch

__all__ = [
    "DEFAULT_ARTIFACTS",
    "DEFAULT_OUT",
    "ROOT",
    "DemoError",
    "DemoPaths",
    "MissingArtifacts",
    "convert_head",
    "demo_device_config",
    "demo_server_tables",
    "ensure_artifacts",
    "main",
    "prepare_calibration_folder",
    "prepare_camera_folder",
    "prepare_tail",
    "run_daemons",
    "write_device_config",
    "write_server_config",
]


# --------------------------------------------------------------------------------------
# the two configs


def demo_server_tables(paths: DemoPaths, endpoint: str) -> configs.ServerTables:
    """The demo's server.toml: one tail, small batches, no Prometheus port."""
    from server.config import BatchingSection, LogSection, MetricsSection, ModelTable
    from server.config import ServerSection as Server

    return {
        "server": Server(bind=(endpoint,), top_k=5),
        "batching": BatchingSection(max_batch=8, max_wait_us=1000),
        "models": (ModelTable(path=paths.tail_dir),),
        "metrics": MetricsSection(enabled=False),
        "log": LogSection(level="info"),
    }


def demo_device_config(paths: DemoPaths, endpoint: str, tflite: Path, frames: int):
    """The demo's device.toml: folder camera of real labeled photos, INA226 simulator at
    1 kHz, mock GPIO, one frame in flight (so each frame's stages are its own)."""
    from device import config as c

    return c.DeviceConfig(
        device=c.DeviceSection(
            name="demo-board",
            max_frames=frames,
            startup_timeout_s=60.0,
            drain_timeout_s=5.0,
            summary_path=paths.summary,
        ),
        camera=c.CameraSection(
            source="folder",
            params={"path": str(paths.camera), "loop": True, "labels": True, "fps": 0.0},
        ),
        heads=(c.HeadSection(name="bottlefit", model=tflite, num_threads=2),),
        server=c.ServerSection(
            endpoints=(endpoint,), window=1, reply_timeout_s=30.0, hello_timeout_s=2.0
        ),
        power=c.PowerSection(monitor="sim", rate_hz=1000.0, log_path=paths.power_log),
        gpio=c.GpioSection(status_led=17, pin_factory="mock"),
        logging=c.LoggingSection(level="info", summary_interval_s=5.0),
        metrics=c.MetricsSection(path=paths.metrics),
    )


def write_server_config(paths: DemoPaths, endpoint: str) -> Path:
    return configs.write_server_config(
        paths.out / "server.toml", demo_server_tables(paths, endpoint), "written by the demo"
    )


def write_device_config(paths: DemoPaths, endpoint: str, tflite: Path, frames: int) -> Path:
    return configs.write_device_config(
        paths.out / "device.toml",
        demo_device_config(paths, endpoint, tflite, frames),
        "written by the demo: folder camera of real labeled photos, INA226 simulator, mock GPIO",
    )


# --------------------------------------------------------------------------------------
# the run


def run_daemons(paths: DemoPaths, tflite: Path, frames: int, *, timeout_s: float) -> None:
    """splitfit-server and splitfit-device streaming ``frames`` frames; both must exit 0."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server_cfg = write_server_config(paths, endpoint)
    device_cfg = write_device_config(paths, endpoint, tflite, frames)
    for stale in (paths.metrics, paths.summary, paths.power_log):
        stale.unlink(missing_ok=True)
    env = processes.daemon_env()
    with processes.process_group() as procs:
        log = paths.logs / "server.log"
        server = processes.Watched(
            processes.start(procs, processes.daemon_cmd("server.cli", server_cfg), log, env),
            "splitfit-server",
            log,
        )
        print(f"  splitfit-server on {endpoint} (pid {server.proc.pid})")
        log = paths.logs / "device.log"
        cmd = processes.daemon_cmd("device.cli", device_cfg, "--frames", str(frames))
        device = processes.Watched(processes.start(procs, cmd, log, env), "splitfit-device", log)
        print(f"  splitfit-device streaming {frames} frames (pid {device.proc.pid})")
        processes.wait_exit(device, timeout_s, others=[server], what=f" {frames} frames")
        processes.stop(server)
    print("  both daemons stopped cleanly")


def run(args: argparse.Namespace) -> int:
    paths = DemoPaths(Path(args.out).resolve())
    artifacts = Path(args.artifacts).resolve()
    python = sys.executable
    paths.out.mkdir(parents=True, exist_ok=True)

    print("[1/4] split model")
    ensure_artifacts(artifacts)
    labels = split_labels(artifacts)
    n_photos = prepare_camera_folder(paths.camera, labels)
    n_calib = prepare_calibration_folder(paths.calib)
    print(f"  {show(artifacts)}: "
          f"{n_photos} labeled camera photos, {n_calib} calibration photos")  # fmt: skip

    print("[2/4] convert the head to full int8 (convert-head)")
    tflite = convert_head(artifacts, paths, python=python)
    prepare_tail(artifacts, paths)

    print("[3/4] stream through splitfit-device -> splitfit-server")
    run_daemons(paths, tflite, args.frames, timeout_s=args.timeout)

    print("[4/4] results")
    frames = load_frames(paths.metrics)
    summary = read_json(paths.summary) if paths.summary.is_file() else {}
    s = summarize(frames, summary)
    s.q85_jpeg_bytes = q85_jpeg_bytes(paths.camera)
    print_table(s)
    png = paths.out / "demo.png"
    plot(s, frames, load_power_trace(paths.power_log), png)
    result = paths.out / "demo-summary.json"
    write_json_atomic(result, s.to_dict())
    print(f"\nwrote {show(png)} and {show(result)}")
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
    except BenchError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ndemo: interrupted; every process it started was stopped", file=sys.stderr)
        return exitcodes.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
