"""Tail-server throughput and latency, dynamic batching on vs off, 1/8/64 concurrent devices.

    python -m benchmarks.server [--clients 1,8,64] [--duration 10] [--threads 2] [--rounds 1]

The tail is ResNet-18 split after its first residual block (BottleNet's RB1): the RB1
features are 64×56×56; the bottleneck on the wire is 8×28×28 (C'=8, stride 2, 8-bit JPEG
q=20), and the tail is the restoration unit plus the rest of ResNet-18 (rb2…rb8, pool, fc,
1000 classes), built with ``training.create_model("resnet18")`` + ``split_model`` and
exported with ``training.export.export_split`` exactly as a trained model would be (weights
are random: throughput does not depend on them).

Why one server with two models: the machine is shared and noisy, so "batching on" and
"batching off" are two registrations of the *same* tail file in one server process
(``max_batch = 32`` vs ``max_batch = 1``), measured alternately in the same run; only the
ratio between them is meaningful, not the absolute numbers.

Each measurement is a closed loop: N DEALER clients (one thread, one poller) each keep one
request in flight. Warm-up lasts until every client has had one reply (a full cycle of the
queue); the measurement window then lasts ``max(duration, 2 × warm-up)`` (capped), and
throughput and latency percentiles are over the replies received in that window. The
server runs as a real ``splitfit-server`` subprocess; the mean batch size comes from its
Prometheus endpoint.

Writes ``benchmarks/results/server.json``, ``server.md`` and ``server.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.server_harness import (
    MAX_BATCH_ON,
    MAX_WAIT_US_ON,
    RESULTS,
    Measurement,
    batching_config,
    build_tail,
    closed_loop,
    make_payloads,
    scrape_batches,
    start_server,
    tail_only,
    twin_without_batching,
)
from wire.atomicfile import write_bytes_atomic
from wire.manifest import load_tail_manifest
from wire.protocol import Hello


def summarize(rows: list[Measurement]) -> list[dict]:
    out = []
    for n in sorted({r.clients for r in rows}):
        on = [r for r in rows if r.clients == n and r.batching == "on"]
        off = [r for r in rows if r.clients == n and r.batching == "off"]

        def med(rs: list[Measurement], key: str) -> float:
            return float(np.median([getattr(r, key) for r in rs]))

        out.append(
            {
                "clients": n,
                "on_rps": med(on, "throughput_rps"),
                "off_rps": med(off, "throughput_rps"),
                "speedup": med(on, "throughput_rps") / med(off, "throughput_rps"),
                "on_p50_ms": med(on, "p50_ms"),
                "on_p99_ms": med(on, "p99_ms"),
                "off_p50_ms": med(off, "p50_ms"),
                "off_p99_ms": med(off, "p99_ms"),
                "on_mean_batch": med(on, "mean_batch_size"),
                "off_mean_batch": med(off, "mean_batch_size"),
            }
        )
    return out


def write_markdown(path: Path, meta: dict, summary: list[dict]) -> None:
    lines = [
        "# Tail server: dynamic batching on vs off",
        "",
        f"ResNet-18 tail after RB1 (bottleneck {meta['tail']['split']['bottleneck_chw']} "
        f"→ features {meta['tail']['split']['feature_chw']} → 1000 classes), JPEG q=20 payloads, "
        f"CPU, torch threads = {meta['threads']}, {meta['cpu_count']} cores shared with other "
        f"work (load average {meta['loadavg_before'][0]:.1f} → {meta['loadavg_after'][0]:.1f}). "
        f"Batching on: max_batch {MAX_BATCH_ON}, max_wait {MAX_WAIT_US_ON} µs; off: max_batch 1. "
        f"Closed loop, one request in flight per client; medians over {meta['rounds']} round(s), "
        "on and off measured alternately in one run.",
        "",
        "The tail alone (no server, same thread count, two alternated samples each): ms per image "
        + ", ".join(
            f"batch {k.split('_')[1]}: {' / '.join(f'{v:.0f}' for v in vals)}"
            for k, vals in meta["tail_alone"].items()
        )
        + ".",
        "",
        "| clients | on: req/s | off: req/s | speed-up | on: p50 / p99 ms | off: p50 / p99 ms | on: mean batch |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['clients']} | {s['on_rps']:.2f} | {s['off_rps']:.2f} | {s['speedup']:.2f}× "
            f"| {s['on_p50_ms']:.0f} / {s['on_p99_ms']:.0f} | {s['off_p50_ms']:.0f} / {s['off_p99_ms']:.0f} "
            f"| {s['on_mean_batch']:.1f} |"
        )
    # Issue #23 retired "≥ 3× at 64 clients" (on a CPU the per-image cost of this tail does not
    # fall with batch size); what batching must do is not lose throughput against no batching
    # at ≥ 8 clients and keep p99 bounded: p99 ≤ 2 × N / X (one cycle of a queue of N at
    # throughput X, doubled), the same check as benchmarks/scaleout.py.
    checks = []
    for s in summary:
        if s["clients"] < 8:
            continue
        no_loss = "yes" if s["speedup"] >= 1.0 else "**NO**"
        bound = s["on_p99_ms"] / (2e3 * s["clients"] / s["on_rps"]) if s["on_rps"] else float("inf")
        checks.append(
            f"- {s['clients']} clients: batching on / off = {s['speedup']:.2f}× (no throughput "
            f"loss: {no_loss}); p99 = {2 * bound:.2f} × N/X (bounded by 2: "
            f"{'yes' if bound <= 1.0 else '**NO**'})"
        )
    if checks:
        lines += [
            "",
            "Checks (batching must not lose throughput at ≥ 8 clients; p99 bounded):",
            *checks,
        ]
    lines += [
        "",
        "Reading the numbers: on a CPU a convolution costs the same FLOPs per image at any "
        "batch size, so dynamic batching can only win what batch 1 wastes (per-call overhead, "
        "poor thread utilisation on small tensors); at large batches the activations of this "
        "tail (64×56×56 per image) also leave the caches. Where that waste is small the "
        "speed-up is near 1×; the load average above shows how much other work shared the "
        "cores, and differences under ~1.5× are within this host's run-to-run noise.",
    ]
    lines += [
        "",
        "Produced by `python -m benchmarks.server`; raw numbers in `server.json`, plot in `server.png`.",
        "",
    ]
    write_bytes_atomic(path, "\n".join(lines).encode())


def plot(path: Path, summary: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [s["clients"] for s in summary]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(n, [s["on_rps"] for s in summary], "o-", label="batching on")
    ax1.plot(n, [s["off_rps"] for s in summary], "s--", label="batching off")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("concurrent clients")
    ax1.set_ylabel("throughput (req/s)")
    ax1.set_title("Throughput")
    ax1.legend()
    for key, style, label in (
        ("on_p50_ms", "o-", "on p50"),
        ("on_p99_ms", "o:", "on p99"),
        ("off_p50_ms", "s--", "off p50"),
        ("off_p99_ms", "s:", "off p99"),
    ):
        ax2.plot(n, [s[key] for s in summary], style, label=label)
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("concurrent clients")
    ax2.set_ylabel("latency (ms)")
    ax2.set_title("Latency")
    ax2.legend()
    fig.suptitle("splitfit-server, ResNet-18 tail after RB1, CPU")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.server", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: batching on vs off (server.json); ray: the local rows next to Ray Serve "
        "with 1/2 replicas and 1/2 front ends (scaleout.json, benchmarks/scaleout.py)",
    )
    parser.add_argument(
        "--clients", default=None, help="comma-separated client counts (1,8,64; ray: 8,64)"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="minimum window per point, s (10; ray: 8)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads in the server"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repetitions (on/off alternate)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    ray = args.backend == "ray"
    args.clients = args.clients or ("8,64" if ray else "1,8,64")
    args.duration = args.duration if args.duration is not None else (8.0 if ray else 10.0)
    try:
        clients = [int(c) for c in args.clients.split(",") if c]
    except ValueError:
        parser.error(f"--clients must be comma-separated integers, got {args.clients!r}")
    if not clients or min(clients) < 1:
        parser.error(f"--clients needs positive counts, got {args.clients!r}")
    if ray:
        from benchmarks.scaleout import run

        args.clients = clients
        return run(args)
    args.out.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    with tempfile.TemporaryDirectory(prefix="splitfit-bench-server-") as tmp_str:
        tmp = Path(tmp_str)
        print("building the RB1-split ResNet-18 tail ...", file=sys.stderr)
        tail_info = build_tail(tmp / "on")
        model_on = load_tail_manifest(tmp / "on" / "tail.json").model_id
        model_off = twin_without_batching(tmp / "on", tmp / "off")
        endpoint = f"ipc://{tmp}/server.sock"
        config = batching_config(tmp / "server.toml", endpoint, args.threads)
        hello_on, payloads = make_payloads(tmp / "on")
        hello_off = Hello(**{**asdict(hello_on), "model_id": model_off})
        loadavg_before = os.getloadavg()
        print("tail alone, batch 1 vs batch 32 ...", file=sys.stderr)
        bare = tail_only(tmp / "on" / "tail.pt", tuple(hello_on.tensor_shape), args.threads)
        print(f"tail alone: {bare}", file=sys.stderr)
        proc, listening = start_server(config, tmp / "server.log")
        rows: list[Measurement] = []
        try:
            port = int(listening["metrics_port"])
            plan = []
            for r in range(args.rounds):
                for n in clients:
                    modes = ("on", "off") if (r + clients.index(n)) % 2 == 0 else ("off", "on")
                    plan += [(r, n, m) for m in modes]
            for r, n, mode in tqdm(plan, desc="server benchmark", unit="point"):
                model_id = model_on if mode == "on" else model_off
                hello = hello_on if mode == "on" else hello_off
                before = scrape_batches(port, model_id)
                res = closed_loop(endpoint, hello, payloads, n, args.duration)
                after = scrape_batches(port, model_id)
                batches = after[1] - before[1]
                mean_batch = (after[0] - before[0]) / batches if batches else float("nan")
                rows.append(
                    Measurement(
                        clients=n,
                        batching=mode,
                        round=r,
                        throughput_rps=res["completed"] / res["window_s"],
                        mean_batch_size=mean_batch,
                        **res,
                    )
                )
                tqdm.write(
                    f"clients={n:3d} batching={mode:3s} {rows[-1].throughput_rps:7.2f} req/s "
                    f"p50={res['p50_ms']:8.1f} ms p99={res['p99_ms']:8.1f} ms batch={mean_batch:.1f}"
                )
        finally:
            proc.terminate()
            proc.wait(120)
        loadavg_after = os.getloadavg()

    import torch

    meta = {
        "benchmark": "server",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": args.threads,
        "rounds": args.rounds,
        "duration_min_s": args.duration,
        "loadavg_before": loadavg_before,
        "loadavg_after": loadavg_after,
        "batching_on": {"max_batch": MAX_BATCH_ON, "max_wait_us": MAX_WAIT_US_ON},
        "batching_off": {"max_batch": 1, "max_wait_us": 0},
        "tail": tail_info,
        "tail_alone": bare,
        "method": "closed loop, one request in flight per client; warm-up = until every client "
        "had one reply; window = max(duration, 2*warm-up) capped at 60 s; on/off alternate",
    }
    summary = summarize(rows)
    result = {**meta, "summary": summary, "measurements": [asdict(r) for r in rows]}
    write_bytes_atomic(args.out / "server.json", (json.dumps(result, indent=2) + "\n").encode())
    write_markdown(args.out / "server.md", meta, summary)
    plot(args.out / "server.png", summary)
    for s in summary:
        print(
            f"{s['clients']:3d} clients: on {s['on_rps']:.2f} req/s, off {s['off_rps']:.2f} req/s, "
            f"speed-up {s['speedup']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
