"""Cloud-only baseline over ZeroMQ: the device JPEG-encodes the 224² input, the server runs
the full float EfficientNet-Lite0 in torch.

Why a separate tiny pair rather than splitfit-server: the split server only accepts
bottleneck tensors; the honest cloud-only path is "send the picture, run the whole model",
measured with the same clocks and over the same shaped link as the split path.

    python -m benchmarks.e2e_cloud server --endpoint tcp://127.0.0.1:PORT
    python -m benchmarks.e2e_cloud client --endpoint ... --images list.json --out frames.jsonl
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

QUALITY = 85
MEAN = 0.4980392156862745  # the registry's EfficientNet-Lite0 normalisation (head.pt.json)
STD = 0.5019607843137255


def load_teacher():
    """The unsplit float model the split was distilled from."""
    import torch

    from training.models.registry import create_model

    torch.set_num_threads(2)
    return create_model("efficientnet_lite0", pretrained=True).eval()


def classify(model, rgb224: np.ndarray) -> tuple[int, float]:
    """top-1 id and compute ms of the float model on one uint8 (224, 224, 3) image."""
    import torch

    x = torch.from_numpy(rgb224.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - MEAN) / STD
    t0 = time.perf_counter()
    with torch.inference_mode():
        top = int(model(x).argmax(1)[0])
    return top, (time.perf_counter() - t0) * 1e3


def serve(endpoint: str) -> int:
    import zmq
    from PIL import Image

    model = load_teacher()
    classify(model, np.zeros((224, 224, 3), np.uint8))  # warm-up before the first frame
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    print(json.dumps({"event": "ready", "endpoint": endpoint}), file=sys.stderr, flush=True)
    try:
        while True:
            ident, payload = sock.recv_multipart()
            t0 = time.perf_counter()
            try:
                with Image.open(io.BytesIO(payload)) as img:
                    rgb = np.asarray(img.convert("RGB"))
            except Exception as exc:  # a bad frame gets an error reply, never a crash
                sock.send_multipart([ident, json.dumps({"error": str(exc)}).encode()])
                continue
            decode_ms = (time.perf_counter() - t0) * 1e3
            top, compute_ms = classify(model, rgb)
            reply = {"top1": top, "decode_ms": decode_ms, "compute_ms": compute_ms}
            sock.send_multipart([ident, json.dumps(reply).encode()])
    except KeyboardInterrupt:
        return 0
    finally:
        sock.close(0)
        ctx.term()


def encode_jpeg(rgb224: np.ndarray, quality: int = QUALITY) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb224).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def client(endpoint: str, images: Path, out: Path, quality: int) -> int:
    import zmq
    from PIL import Image

    from hardware.preprocess import preprocess

    items = json.loads(images.read_text())
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    # wait for the server (model load) with a tiny probe so the first frame is not penalised
    sock.send(encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
    if not sock.poll(120_000):
        print("cloud client: server did not answer within 120 s", file=sys.stderr)
        return 1
    sock.recv()
    rows = []
    for item in items:
        with Image.open(item["path"]) as img:
            frame = np.asarray(img.convert("RGB"))  # the camera frame (not device work)
        # From here on it is per-frame device work, as in splitfit-device from frame pickup:
        # the same 224² preprocess the split head's input goes through, then the JPEG.
        t0 = time.perf_counter()
        rgb = preprocess(frame, size=(224, 224))[0]
        t1 = time.perf_counter()
        data = encode_jpeg(rgb, quality)
        t2 = time.perf_counter()
        sock.send(data)
        if not sock.poll(60_000):
            print("cloud client: reply timeout", file=sys.stderr)
            return 1
        reply = json.loads(sock.recv())
        t3 = time.perf_counter()
        rows.append(
            {
                "path": item["path"],
                "label": item["label"],
                "label_id": item["label_id"],
                "bytes": len(data),
                "preprocess_ms": (t1 - t0) * 1e3,
                "encode_ms": (t2 - t1) * 1e3,
                "rtt_ms": (t3 - t2) * 1e3,
                "latency_ms": (t3 - t0) * 1e3,  # pickup -> reply, like the split rows
                "server_ms": reply.get("decode_ms", 0.0) + reply.get("compute_ms", 0.0),
                "top1": reply.get("top1"),
            }
        )
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, out)
    sock.close(0)
    ctx.term()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.e2e_cloud")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--endpoint", required=True)
    c = sub.add_parser("client")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--images", required=True, type=Path)
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--quality", type=int, default=QUALITY)
    a = p.parse_args(argv)
    if a.cmd == "server":
        return serve(a.endpoint)
    return client(a.endpoint, a.images, a.out, a.quality)


if __name__ == "__main__":
    sys.exit(main())
