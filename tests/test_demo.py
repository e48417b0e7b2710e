"""`make demo`'s engine: real server + device subprocesses on the shipped labeled photos.

The fast tests check the failure paths; the slow ones export a small split EfficientNet-Lite0
(pretrained stem + an untrained bottleneck — the path, not the accuracy, is under test),
convert its head with the real converter and stream frames through both daemons.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def _demo(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.demo", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900, **kw,
    )  # fmt: skip


def test_missing_artifacts_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    proc = _demo("--artifacts", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 3  # wire.exitcodes.BAD_INPUT
    assert "missing head.pt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_frames_must_be_positive(tmp_path: Path) -> None:
    proc = _demo("--frames", "0", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "--frames" in proc.stderr


@pytest.fixture(scope="module")
def small_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from training.bottleneck import split_model
    from training.compressor import CodecConfig
    from training.data.photos import imagenet_labels
    from training.export import export_split
    from training.models import create_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("split")
    teacher = create_model("efficientnet_lite0", pretrained=True).eval()
    head, tail = split_model(teacher, "stage2", 8, 2)
    export_split(
        head.eval(), tail.eval(), out, labels=imagenet_labels(), mean=teacher.mean,
        std=teacher.std, codec=CodecConfig("jpeg", 8, {"quality": 20}),
    )  # fmt: skip
    return out


@pytest.mark.slow
def test_demo_streams_every_frame_and_reports(small_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _demo("--artifacts", str(small_split), "--out", str(out), "--frames", "6")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["replied"] == summary["frames"] == 6
    assert summary["scored"] == 6  # every frame carried its ground-truth label
    assert 0 < summary["bytes_per_frame_mean"] < summary["q85_jpeg_bytes"]
    lat = summary["latency_ms"]
    assert lat["total"]["p50"] >= lat["head"]["p50"] > 0
    assert summary["energy_frame_mj_mean"] > summary["energy_head_mj_mean"] > 0
    assert (out / "demo.png").stat().st_size > 10_000
    assert "bytes / frame on the wire" in proc.stdout
    # a second run reuses the converted head instead of converting again
    again = _demo("--artifacts", str(small_split), "--out", str(out), "--frames", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "int8 head up to date" in again.stdout


@pytest.mark.slow
def test_ctrl_c_stops_every_process_the_demo_started(small_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    err_log = tmp_path / "demo.err"
    # Output to files, not pipes: the test waits for the demo process itself, not for EOF on a
    # pipe that any grandchild (a converter worker) could still hold open.
    with open(tmp_path / "demo.out", "w") as out_fh, open(err_log, "w") as err_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.demo", "--artifacts", str(small_split),
             "--out", str(out), "--frames", "100000"],
            cwd=ROOT, stdout=out_fh, stderr=err_fh, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            # Ctrl-C in a terminal: SIGINT at its default. A suite started in the background
            # by a non-interactive shell (nohup, `cmd &`) inherits SIGINT ignored, and Python
            # then keeps ignoring it, so the demo would never see this test's Ctrl-C.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
    me = psutil.Process(proc.pid)
    children: list[psutil.Process] = []

    def daemon_streaming() -> bool:
        if proc.poll() is not None:
            return True  # the demo gave up: reported below, with its stderr
        with contextlib.suppress(psutil.Error):  # a short-lived child may exit mid-listing
            children[:] = [
                c for c in me.children(recursive=True) if "device.cli" in " ".join(c.cmdline())
            ]
        return bool(children) and (out / "metrics" / "frames.jsonl").is_file()

    with contextlib.suppress(AssertionError):  # likewise a timeout
        wait_until(daemon_streaming, 600, interval=0.5)
    assert children, "the device daemon never started: " + err_log.read_text()[-2000:]
    started = me.children(recursive=True)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        alive = [" ".join(c.cmdline()) for c in me.children(recursive=True)]
        proc.kill()
        raise AssertionError(
            f"demo still running 60 s after Ctrl-C; children {alive}; stderr: "
            + err_log.read_text()[-2000:]
        ) from None
    err = err_log.read_text()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    _gone, alive = psutil.wait_procs(started, timeout=10)
    assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
