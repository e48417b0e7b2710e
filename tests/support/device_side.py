"""Helpers for the device tests: a real int8 TFLite head and a real ZeroMQ ROUTER peer.

Run as a script (``python tests/support/device_side.py ...``) it is either
  * ``build-head OUT_DIR --size 32 --channels 2 --name h`` — Keras conv model ->
    TFLiteConverter (full int8, uint8 input, int8 output) + ``head.json`` (tensorflow is
    imported only in that subprocess, never in the pytest process nor in ``device/``), or
  * ``peer --endpoint tcp://127.0.0.1:PORT [--malformed] [--load FILE]`` — a tail-server
    stand-in speaking ``wire.protocol``: HELLO -> WELCOME, FRAME -> decode with the HELLO's
    codec -> REPLY (top-1 = the channel with the largest mean), PING -> PONG, a FRAME for a
    session it does not know -> ERROR UNKNOWN_SESSION. It logs one JSON line per event on
    stdout so tests can check what really crossed the wire.

No tests live here; pytest collects nothing from this package. ``start_server`` runs the
real ``splitfit-server`` process for the daemon-against-server tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


# ---------------------------------------------------------------------- head fixture


def build_head(
    out_dir: Path,
    *,
    size: int = 32,
    channels: int = 2,
    name: str = "head",
    stride2: int = 2,
    seed: int = 0,
    filters: int = 8,
    extra_layers: int = 0,
    pool: bool = False,
) -> tuple[Path, Path]:
    """Build ``name.tflite`` + ``name.json`` in ``out_dir`` (in a subprocess, with TF).

    ``pool``: end in a global average pool, so the output is (1, 1, 1, channels) logits — a
    whole model for a ``kind = "local"`` partition instead of a split head."""
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            PY,
            str(Path(__file__)),
            "build-head",
            str(out_dir),
            "--size",
            str(size),
            "--channels",
            str(channels),
            "--name",
            name,
            "--stride2",
            str(stride2),
            "--seed",
            str(seed),
            "--filters",
            str(filters),
            "--extra-layers",
            str(extra_layers),
            *(["--pool"] if pool else []),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"build-head failed:\n{proc.stderr[-3000:]}")
    return out_dir / f"{name}.tflite", out_dir / f"{name}.json"


def _build_head_main(args: argparse.Namespace) -> None:
    import numpy as np
    import tensorflow as tf

    from wire.manifest import HeadManifest, TensorSpec, save_manifest, sha256_file

    tf.random.set_seed(args.seed)
    s, c = args.size, args.channels
    inp = tf.keras.Input((s, s, 3))
    x = tf.keras.layers.Rescaling(1 / 255.0)(inp)
    x = tf.keras.layers.Conv2D(args.filters, 3, strides=2, padding="same", activation="relu")(x)
    for _ in range(args.extra_layers):
        x = tf.keras.layers.Conv2D(args.filters, 3, padding="same", activation="relu")(x)
    x = tf.keras.layers.Conv2D(c, 3, strides=args.stride2, padding="same", activation="relu")(x)
    if args.pool:  # a whole model: logits as a (1, 1, 1, classes) map
        x = tf.keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    model = tf.keras.Model(inp, x)
    rng = np.random.default_rng(args.seed)

    def rep():
        for _ in range(16):
            yield [rng.integers(0, 256, (1, s, s, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.int8
    blob = conv.convert()
    out = Path(args.out)
    tfl = out / f"{args.name}.tflite"
    tfl.write_bytes(blob)

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tfl))
    o = it.get_output_details()[0]
    i = it.get_input_details()[0]
    scale, zp = o["quantization"]
    _, h, w, cc = (int(v) for v in o["shape"])
    manifest = HeadManifest(
        model_id=f"test-{args.name}-{sha256_file(tfl)[:16]}",
        input=TensorSpec(shape=[int(v) for v in i["shape"]], dtype="uint8", layout="NHWC"),
        output=TensorSpec(
            shape=[1, h, w, cc], dtype="int8", layout="NHWC", scale=float(scale), zero_point=int(zp)
        ),
        bottleneck_chw=[cc, h, w],
        normalization={"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        codec={"name": "zstd", "bits": 6, "params": {}},
        labels=[f"cls{k}" for k in range(cc)],
        source_sha256="0" * 64,
        tflite_sha256=sha256_file(tfl),
        extra={"test": True},
    )
    save_manifest(manifest, out / f"{args.name}.json")


# ---------------------------------------------------------------------- ROUTER peer


def _peer_main(args: argparse.Namespace) -> None:
    import numpy as np
    import zmq

    from wire import protocol
    from wire.codecs import FeatureCodec
    from wire.errors import CodecError, ProtocolError
    from wire.quant import QuantParams

    def emit(**kw):
        print(json.dumps(kw), flush=True)

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(args.endpoint)
    emit(event="listening", endpoint=args.endpoint, pid=os.getpid())
    # Session ids differ between peer restarts, like a real server's.
    next_session = (os.getpid() * 7919) % 1_000_000 + 1
    sessions: dict[int, tuple[FeatureCodec, str]] = {}
    frames = 0

    def load_for(model_id: str) -> protocol.ServerLoad:
        if not args.load:
            return protocol.ServerLoad()
        try:
            table = json.loads(Path(args.load).read_text())
        except (OSError, ValueError):
            return protocol.ServerLoad()
        q = int(table.get(model_id, 0))
        return protocol.ServerLoad(queue_depth=q, utilization=min(1.0, q / 10), compute_ms=1.0)

    while True:
        parts = sock.recv_multipart()
        ident, body = parts[0], parts[1:]
        try:
            msg = protocol.decode_message(body)
        except ProtocolError as exc:
            emit(event="bad_message", error=str(exc))
            continue
        if isinstance(msg, protocol.Hello):
            sid = next_session
            next_session += 1
            codec = FeatureCodec(
                tuple(msg.tensor_shape),
                QuantParams(msg.scale, msg.zero_point, msg.bits),
                msg.codec,
                msg.codec_params,
            )
            sessions[sid] = (codec, msg.model_id)
            emit(
                event="hello",
                session=sid,
                model_id=msg.model_id,
                codec=msg.codec,
                bits=msg.bits,
                shape=list(msg.tensor_shape),
            )
            sock.send_multipart(
                [
                    ident,
                    *protocol.encode_message(
                        protocol.Welcome(sid, {"models": [msg.model_id]}, load_for(msg.model_id))
                    ),
                ]
            )
        elif isinstance(msg, protocol.Frame):
            if msg.session_id not in sessions:
                emit(event="unknown_session", session=msg.session_id, seq=msg.seq)
                sock.send_multipart(
                    [
                        ident,
                        *protocol.encode_message(
                            protocol.ErrorMsg(
                                protocol.ErrorCode.UNKNOWN_SESSION,
                                "unknown session",
                                msg.seq,
                                msg.session_id,
                            )
                        ),
                    ]
                )
                continue
            codec, model_id = sessions[msg.session_id]
            t0 = time.perf_counter()
            try:
                x = codec.decode_float(msg.payload)
            except CodecError as exc:
                sock.send_multipart(
                    [
                        ident,
                        *protocol.encode_message(
                            protocol.ErrorMsg(
                                protocol.ErrorCode.BAD_TENSOR, str(exc), msg.seq, msg.session_id
                            )
                        ),
                    ]
                )
                continue
            dec_us = int((time.perf_counter() - t0) * 1e6)
            means = x.reshape(x.shape[0], -1).mean(axis=1)
            order = [int(k) for k in np.argsort(-means)]
            frames += 1
            emit(
                event="frame",
                session=msg.session_id,
                seq=msg.seq,
                model_id=model_id,
                bytes=len(msg.payload),
                top1=order[0],
            )
            if args.delay_ms:
                time.sleep(args.delay_ms / 1e3)
            reply = protocol.Reply(
                msg.session_id,
                msg.seq,
                tuple(order),
                tuple(float(means[k]) for k in order),
                (f"cls{order[0]}",),
                dec_us,
                10,
                500,
                load_for(model_id),
            )
            if args.malformed and frames % 3 == 0:
                # Garbage, a truncated reply, and a reply for a seq never sent.
                sock.send_multipart([ident, b"\x01\x04garbage"])
                sock.send_multipart([ident, protocol.encode_message(reply)[0][:20]])
                sock.send_multipart([ident, b"\x63\x01\x00\x00"])
                sock.send_multipart(
                    [
                        ident,
                        *protocol.encode_message(
                            protocol.Reply(
                                msg.session_id,
                                4_000_000_000,
                                (0,),
                                (1.0,),
                                (),
                                0,
                                0,
                                0,
                                protocol.ServerLoad(),
                            )
                        ),
                    ]
                )
            sock.send_multipart([ident, *protocol.encode_message(reply)])
        elif isinstance(msg, protocol.Ping):
            model_id = sessions.get(msg.session_id, (None, ""))[1]
            sock.send_multipart(
                [
                    ident,
                    *protocol.encode_message(
                        protocol.Pong(msg.session_id, msg.seq, msg.ts_us, load_for(model_id))
                    ),
                ]
            )
        else:
            emit(event="unexpected", type=type(msg).__name__)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-head")
    b.add_argument("out")
    b.add_argument("--size", type=int, default=32)
    b.add_argument("--channels", type=int, default=2)
    b.add_argument("--name", default="head")
    b.add_argument("--stride2", type=int, default=2)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--filters", type=int, default=8)
    b.add_argument("--extra-layers", type=int, default=0)
    b.add_argument("--pool", action="store_true")
    q = sub.add_parser("peer")
    q.add_argument("--endpoint", required=True)
    q.add_argument("--malformed", action="store_true")
    q.add_argument("--load", default=None)
    q.add_argument("--delay-ms", type=float, default=0.0)
    args = p.parse_args()
    if args.cmd == "build-head":
        _build_head_main(args)
    else:
        _peer_main(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()


# ---------------------------------------------------------------------- process helpers


def metrics_rows(path: Path) -> list[dict]:
    """The daemon's metrics rows written so far (none before the file exists).

    Only complete lines: while the daemon runs, its writer flushes in blocks, so the last
    line may be half-written, and a test polling the file must not trip over it.
    """
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(ln) for ln in text[: text.rfind("\n") + 1].splitlines() if ln.strip()]


def cached_head(base: Path, name: str = "head", **kw) -> tuple[Path, Path]:
    """One build per pytest session per (name, params): TF startup costs ~8 s."""
    key = "-".join([name, *(f"{k}{v}" for k, v in sorted(kw.items()))])
    d = base / "heads" / key
    if not (d / f"{name}.json").exists():
        build_head(d, name=name, **kw)
    return d / f"{name}.tflite", d / f"{name}.json"


class Proc:
    """A child process whose stdout/stderr lines are collected by reader threads.

    Each new line (and EOF) wakes :meth:`wait_for`, so a test waiting for an event sees it
    the moment it is printed, without polling on a fixed interval.
    """

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        import threading

        self.argv = argv
        self.p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._news = threading.Condition()
        self._eofs = 0
        self._readers = [
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
            for stream, sink in ((self.p.stdout, self.out), (self.p.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def drained(self, timeout: float = 10.0) -> None:
        """Wait until both pipes reached EOF (the process exited): every line is collected,
        so a test can count them without a guessed sleep."""
        for reader in self._readers:
            reader.join(timeout)
            assert not reader.is_alive(), f"{self.argv[:3]}: output still open after {timeout} s"

    def _pump(self, stream, sink) -> None:
        for line in stream:
            with self._news:
                sink.append(line.rstrip("\n"))
                self._news.notify_all()
        with self._news:  # EOF: the process has gone, a waiter must stop waiting
            self._eofs += 1
            self._news.notify_all()

    def _progress(self) -> int:
        """Lines read plus pipes closed: grows whenever there is something new to look at."""
        return len(self.out) + len(self.err) + self._eofs

    def events(self, stream: str = "out") -> list[dict]:
        return self._objects(list(self.out if stream == "out" else self.err))

    @staticmethod
    def _objects(lines: list[str]) -> list[dict]:
        """The JSON objects among ``lines`` (other output is skipped)."""
        out = []
        for line in lines:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict):
                out.append(d)
        return out

    def wait_for(self, pred, timeout: float, stream: str = "out") -> dict | None:
        """The first event on ``stream`` matching ``pred``; None if the process exits or
        ``timeout`` s pass without one."""
        deadline = time.monotonic() + timeout
        lines = self.out if stream == "out" else self.err
        scanned = 0  # each line is parsed once, however chatty the process
        while True:
            with self._news:
                seen = self._progress()
                upto = len(lines)
            for e in self._objects(lines[scanned:upto]):
                if pred(e):
                    return e
            scanned = upto
            if self.p.poll() is not None:
                self.drained()
                return next((e for e in self.events(stream) if pred(e)), None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._news:  # until a line arrives (or EOF, or a 0.5 s look at poll())
                self._news.wait_for(lambda seen=seen: self._progress() > seen, min(remaining, 0.5))

    def stop(self, sig: int | None = None, timeout: float = 10.0) -> int:
        import signal

        if self.p.poll() is None:
            self.p.send_signal(sig or signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        return self.p.returncode

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)


def start_peer(endpoint: str, *extra: str) -> Proc:
    proc = Proc([PY, str(Path(__file__)), "peer", "--endpoint", endpoint, *extra])
    if proc.wait_for(lambda e: e.get("event") == "listening", 30) is None:
        proc.kill()
        raise RuntimeError(f"peer did not start: {proc.err[-5:]}")
    return proc


def start_server(workdir: Path, port: int, models: str | Path) -> Proc:
    """A real ``splitfit-server`` on 127.0.0.1:port, waited for until it listens.

    ``models`` is a tail directory, or the ``[[models]]`` TOML text for several."""
    if isinstance(models, Path):
        models = f'[[models]]\npath = "{models}"\n'
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "server.toml"
    cfg.write_text(
        f'[server]\nbind = ["tcp://127.0.0.1:{port}"]\nlinger_ms = 100\n'
        "[compute]\nthreads = 1\n[metrics]\nenabled = false\n"
        f'[log]\nlevel = "info"\n{models}'
    )
    proc = Proc([PY, "-m", "server.cli", "--config", str(cfg)])
    if proc.wait_for(lambda e: e.get("event") == "listening", 60, "err") is None:
        proc.kill()
        raise RuntimeError(f"server did not start: {proc.err[-5:]}")
    return proc


def start_daemon(config: Path, *extra: str, env: dict[str, str] | None = None) -> Proc:
    return Proc([PY, "-m", "device.cli", "--config", str(config), *extra], env=env)


def write_config(
    path: Path,
    model: Path,
    port: int,
    extra: str = "",
    *,
    camera: str = "",
    heads: str | None = None,
) -> Path:
    """A small device.toml for tests: synthetic 64x48 camera at 100 fps, fast heartbeats."""
    camera = camera or (
        '[camera]\nsource = "synthetic"\n[camera.params]\nwidth = 64\nheight = 48\nfps = 100.0\n'
    )
    heads = heads if heads is not None else f'[[heads]]\nmodel = "{model}"\n'
    text = (
        f"{camera}\n{heads}\n"
        f'[server]\nendpoints = ["tcp://127.0.0.1:{port}"]\nheartbeat_s = 0.2\n'
        "heartbeat_misses = 3\nreconnect_min_s = 0.05\nreconnect_max_s = 0.5\n"
        "hello_timeout_s = 0.3\nreply_timeout_s = 2.0\n"
        f"{extra}\n"
    )
    path.write_text(text)
    return path
