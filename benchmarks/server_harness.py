"""What the server benchmarks share: the RB1-split ResNet-18 tail, a real ``splitfit-server``
subprocess, the HELLO and payloads, the closed-loop clients and the batch-size scrape.

Why a module of its own: ``benchmarks.server`` (local batcher on/off) and
``benchmarks.scaleout`` (the same rows next to Ray Serve) measure with exactly these pieces, and
``server`` hands ``--backend ray`` to ``scaleout``; keeping the harness apart means neither
benchmark imports the other's module to reach it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from benchmarks.harness import configs, processes
from wire.codecs import FeatureCodec
from wire.manifest import load_tail_manifest, save_manifest
from wire.protocol import ErrorMsg, Frame, Hello, Reply, Welcome, decode_message, encode_message
from wire.quant import QuantParams, quantize_float_to_int8

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MAX_BATCH_ON = 32
MAX_WAIT_US_ON = 5000
WINDOW_CAP_S = 60.0


@dataclass(kw_only=True)
class LoopStats:
    """One closed-loop point: :func:`closed_loop`'s figures, the rate and the batch size.

    Both server benchmarks measure exactly these; each adds only the labels of its rows
    (:class:`Measurement` here, ``scaleout.Point`` for the Ray rows).
    """

    clients: int
    round: int
    completed: int
    window_s: float
    warmup_s: float
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    server_compute_ms_mean: float
    server_queue_ms_mean: float
    mean_batch_size: float
    errors: int
    unanswered: int = 0  # frames still without REPLY or ERROR 60 s after the window


@dataclass(kw_only=True)
class Measurement(LoopStats):
    """A ``benchmarks.server`` row: the local batcher on or off."""

    batching: str  # "on" | "off"


# ----------------------------------------------------------------------------- the tail


def build_tail(out: Path) -> dict:
    """Export the RB1-split ResNet-18 with the training package; describe what was built."""
    import torch

    from training.bottleneck import split_model
    from training.compressor import CodecConfig
    from training.export import export_split
    from training.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=1000)
    head, tail = split_model(model, "rb1", channels=8, stride=2)
    export_split(
        head,
        tail,
        out,
        labels=[f"class-{i}" for i in range(1000)],
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        codec=CodecConfig("jpeg", 8, {"quality": 20}),
        extra={"note": "random weights, benchmark only"},
    )
    params = sum(p.numel() for p in tail.parameters())
    return {
        "built_with": "training.create_model('resnet18') + split_model(after='rb1', C'=8, stride=2) + export_split",
        "split": tail.spec.to_dict(),
        "tail_parameters": int(params),
    }


def twin_without_batching(src: Path, dst: Path) -> str:
    """Same tail.pt, manifest under another model_id, so one server can serve both."""
    return twin(src, dst, "-nobatch")


def twin(src: Path, dst: Path, suffix: str = "", prefix: str = "") -> str:
    """A copy of the tail whose model_id is ``prefix + id + suffix``: another registration (or
    Ray application) of the very same weights, so configurations differ only where intended."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "tail.pt", dst / "tail.pt")
    manifest = load_tail_manifest(src / "tail.json")
    manifest.model_id = prefix + manifest.model_id + suffix
    save_manifest(manifest, dst / "tail.json")
    return manifest.model_id


def tail_only(
    tail_path: Path, chw: tuple[int, int, int], threads: int, seconds: float = 2.0
) -> dict:
    """Per-item cost of the bare tail at batch 1, 8 and MAX_BATCH_ON, alternated, no server.

    A diagnostic next to the end-to-end numbers: it tells whether a small speed-up comes
    from the tail itself (CPU convolutions cost the same FLOPs per image at any batch size)
    or from the server around it. Each size gets 4 untimed calls first: TorchScript's
    profiling executor re-optimizes the graph during the first calls for a new shape.
    """
    import torch

    torch.set_num_threads(threads)
    module = torch.jit.load(str(tail_path)).eval()
    sizes = (1, 8, MAX_BATCH_ON)
    samples: dict[int, list[float]] = {b: [] for b in sizes}
    with torch.inference_mode():
        for batch in sizes:
            x = torch.rand(batch, *chw) * 6
            for _ in range(4):
                module(x)
        for _ in range(2):
            for batch in sizes:
                x = torch.rand(batch, *chw) * 6
                t0, n = time.perf_counter(), 0
                while time.perf_counter() - t0 < seconds:
                    module(x)
                    n += 1
                samples[batch].append((time.perf_counter() - t0) / n / batch * 1000)
    return {f"batch_{b}_ms_per_item": [round(v, 1) for v in vals] for b, vals in samples.items()}


# ----------------------------------------------------------------------------- server process


def start_server(config: Path, log_path: Path) -> tuple[subprocess.Popen, dict]:
    """A ``splitfit-server`` subprocess, returned once it logged ``listening`` (with that
    event); the caller stops it. Exiting first or 180 s without listening raises."""
    w = processes.Watched(
        processes.start([], processes.daemon_cmd("server.cli", config), log_path),
        "splitfit-server",
        log_path,
    )
    return w.proc, processes.wait_listening(w, 180.0)


def batching_config(path: Path, endpoint: str, threads: int) -> Path:
    """server.toml serving the tail twice from ``path``'s folder: ``on`` (batching up to
    MAX_BATCH_ON) and ``off`` (batch 1), Prometheus on a free port, written from the server's
    own config types (benchmarks.harness.configs)."""
    from server import config as c

    tables = {
        "server": c.ServerSection(bind=(endpoint,), linger_ms=0),
        "compute": c.ComputeSection(threads=threads),
        "log": c.LogSection(level="info"),
        "metrics": c.MetricsSection(port=0),
        "models": (
            c.ModelTable(path=Path("on"), max_batch=MAX_BATCH_ON, max_wait_us=MAX_WAIT_US_ON),
            c.ModelTable(path=Path("off"), max_batch=1, max_wait_us=0),
        ),
    }
    return configs.write_server_config(path, tables, "written by the server benchmarks")


def scrape_batches(port: int, model_id: str) -> tuple[float, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if f'model="{model_id}"' not in line:
            continue
        if line.startswith("splitfit_batch_size_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("splitfit_batch_size_count"):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


# ----------------------------------------------------------------------------- clients


def make_payloads(manifest_dir: Path, n: int = 16) -> tuple[Hello, list[bytes]]:
    manifest = load_tail_manifest(manifest_dir / "tail.json")
    quant_info = manifest.split["quant"]
    quant = QuantParams(quant_info["scale"], quant_info["zero_point"], manifest.codec["bits"])
    chw = tuple(manifest.input_chw)
    codec = FeatureCodec(chw, quant, manifest.codec["name"], manifest.codec["params"])
    rng = np.random.default_rng(0)
    payloads = []
    for _ in range(n):
        x = rng.uniform(0, 6, size=chw).astype(np.float32)  # bottleneck range [0, out_max]
        payloads.append(codec.encode_int8(quantize_float_to_int8(x, quant), layout="CHW"))
    hello = Hello(
        model_id=manifest.model_id,
        tensor_shape=chw,
        dtype="int8",
        scale=quant.scale,
        zero_point=quant.zero_point,
        bits=quant.bits,
        codec=manifest.codec["name"],
        codec_params=manifest.codec["params"],
        device_name="bench",
    )
    return hello, payloads


def closed_loop(
    endpoint: str | list[str], hello: Hello, payloads: list[bytes], clients: int, duration: float
) -> dict:
    """``clients`` devices, one frame in flight each; with several endpoints (front ends)
    client i talks to endpoint i mod n, so the fleet is split evenly between them."""
    endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
    ctx = zmq.Context()
    socks = []
    try:
        sessions = []
        for i in range(clients):
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            s.connect(endpoints[i % len(endpoints)])
            s.send_multipart(encode_message(hello))
            socks.append(s)
        for s in socks:
            if not s.poll(60_000):
                raise RuntimeError("no WELCOME within 60 s")
            welcome = decode_message(s.recv_multipart())
            if not isinstance(welcome, Welcome):
                raise RuntimeError(f"HELLO refused: {welcome}")
            sessions.append(welcome.session_id)
        poller = zmq.Poller()
        index = {}
        for i, s in enumerate(socks):
            poller.register(s, zmq.POLLIN)
            index[s] = i
        sent_at = [0.0] * clients
        seq = [0] * clients
        answered = [False] * clients

        def send(i: int) -> None:
            seq[i] += 1
            payload = payloads[(i + seq[i]) % len(payloads)]
            socks[i].send_multipart(
                encode_message(Frame(sessions[i], seq[i], time.time_ns() // 1000, payload))
            )
            sent_at[i] = time.perf_counter()

        t_start = time.perf_counter()
        for i in range(clients):
            send(i)
        window_start = window_end = None
        latencies: list[float] = []
        compute: list[float] = []
        queue: list[float] = []
        errors = 0
        while True:
            now = time.perf_counter()
            if window_end is not None and now >= window_end:
                break
            if now - t_start > 600:
                raise RuntimeError("benchmark point took over 10 minutes")
            for sock, _ in poller.poll(100):
                i = index[sock]
                msg = decode_message(sock.recv_multipart())
                done = time.perf_counter()
                if isinstance(msg, ErrorMsg):
                    errors += 1
                elif isinstance(msg, Reply) and window_start is not None and done <= window_end:
                    latencies.append(done - sent_at[i])
                    compute.append(msg.compute_us / 1000)
                    queue.append(msg.queue_us / 1000)
                answered[i] = True
                send(i)
            if window_start is None and all(answered):
                window_start = time.perf_counter()
                warmup = window_start - t_start
                window = min(max(duration, 2 * warmup), max(duration, WINDOW_CAP_S))
                window_end = window_start + window
        # Let the requests still in flight finish, so the next point starts on an idle server;
        # a frame that never gets a REPLY or an ERROR is counted, not waited for forever.
        outstanding = clients
        drain_deadline = time.perf_counter() + 60
        while outstanding and time.perf_counter() < drain_deadline:
            for sock, _ in poller.poll(100):
                sock.recv_multipart()
                outstanding -= 1
        lat = np.array(latencies) * 1000
        return {
            "completed": len(latencies),
            "window_s": window_end - window_start,
            "warmup_s": warmup,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            "mean_ms": float(lat.mean()) if len(lat) else float("nan"),
            "server_compute_ms_mean": float(np.mean(compute)) if compute else float("nan"),
            "server_queue_ms_mean": float(np.mean(queue)) if queue else float("nan"),
            "errors": errors,
            "unanswered": outstanding,
        }
    finally:
        for s in socks:
            s.close(0)
        ctx.term()


# ----------------------------------------------------------------------------- report
