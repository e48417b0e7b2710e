"""The ``local`` partition: the whole model as a full-int8 TFLite model on the board.

Why a partition of its own: BottleNet's Algorithm 1 ranks all-on-device beside the splits,
and on a slow link or with the server gone it is the one that still answers. The model is
what ``convert-head`` makes of the full network (the e2e ``local-int8`` row): uint8 pixels
in, int8 logits out as a (1, 1, 1, classes) map. It is loaded and checked by the same
:class:`device.head.Head` as a split head (manifest hash, shapes, output quantization), and
the answer — top-k ids, softmax scores, labels from its manifest — is computed here, so no
server is involved.

:class:`NoLink` stands in for :class:`device.link.Link` when a config has only local
partitions: the daemon's main loop keeps one shape, and nothing opens a socket.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

import numpy as np

from device.config import HeadSection
from device.head import Head, HeadError
from device.metrics import FrameRecord
from wire.protocol import ServerLoad

TOP_K = 5


@dataclass(frozen=True)
class LocalAnswer:
    """What the server's REPLY would carry, computed on the board."""

    top_ids: tuple[int, ...]
    top_scores: tuple[float, ...]
    labels: tuple[str, ...]
    head_ms: float


class LocalModel:
    """A ``kind = "local"`` ``[[heads]]`` entry: load, check, classify one frame."""

    def __init__(self, cfg: HeadSection) -> None:
        self.cfg = cfg
        self.head = Head(cfg.name, cfg.model, cfg.manifest, num_threads=cfg.num_threads)
        c, h, w = self.head.bottleneck_chw
        if (h, w) != (1, 1):
            raise HeadError(
                f"local partition {cfg.name!r}: {cfg.model} outputs a {h}x{w} map with {c} "
                "channels; a full model must output logits as (1, 1, 1, classes) — was it "
                'converted from a split head? (use kind = "split" for heads)'
            )
        self.classes = c
        labels = self.head.labels
        if labels and len(labels) != c:
            raise HeadError(
                f"local partition {cfg.name!r}: manifest {cfg.manifest} has {len(labels)} "
                f"labels for {c} output classes"
            )
        self.labels = labels
        self.scale = self.head.quant.scale
        self.zero_point = self.head.quant.zero_point

    @property
    def name(self) -> str:
        return self.cfg.name

    def classify(self, image: np.ndarray, k: int = TOP_K) -> LocalAnswer:
        """Top-``k`` of the int8 logits; scores are the softmax of the dequantized logits."""
        out = self.head.run(image)
        codes = out.tensor.reshape(-1).astype(np.float32)
        logits = (codes - self.zero_point) * self.scale
        k = min(k, logits.size)
        ids = np.argpartition(-logits, k - 1)[:k]
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        e = np.exp(logits - logits.max())
        probs = e / e.sum()
        return LocalAnswer(
            top_ids=tuple(int(i) for i in ids),
            top_scores=tuple(float(probs[i]) for i in ids),
            labels=tuple(self.labels[i] for i in ids) if self.labels else (),
            head_ms=out.head_ms,
        )


def answer_record(rec: FrameRecord, ans: LocalAnswer, now: float) -> FrameRecord:
    """Fill ``rec`` as answered on the board at ``now`` (no bytes, no server times)."""
    rec.reply_mono = now
    rec.sent_mono = now
    rec.latency_ms = (now - rec.capture_mono) * 1e3
    rec.top1 = ans.top_ids[0]
    rec.top1_score = ans.top_scores[0]
    rec.top1_label = ans.labels[0] if ans.labels else None
    rec.status = "ok"
    return rec


class NoLink:
    """The link of a daemon with no split partitions: never ready, never anything in flight."""

    ready = False
    inflight = 0
    buffered = 0
    sessions = 0
    cpu_s = 0.0
    server_load = ServerLoad()

    class _State:
        value = "none"

    state = _State()

    def __init__(self) -> None:
        self.done: queue.SimpleQueue[FrameRecord] = queue.SimpleQueue()

    def start(self) -> None:
        """Nothing to start: there is no server to talk to."""

    def stop(self) -> None:
        """Nothing to stop."""

    def join(self, timeout: float | None = None) -> None:
        """Nothing to join."""

    def is_alive(self) -> bool:
        return True

    def wait_slot(self, timeout: float) -> bool:
        return True

    def wait_idle(self, timeout: float) -> bool:
        return True

    def wait_ready(self, timeout: float) -> bool:
        time.sleep(min(timeout, 0.01))
        return False

    def submit(self, record: FrameRecord, payload: bytes) -> None:
        raise RuntimeError("no split partition is configured: frames cannot be sent")

    def switch_session(self, hello: object) -> None:
        raise RuntimeError("no split partition is configured: there is no session to switch")
