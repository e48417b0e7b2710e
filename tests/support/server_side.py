"""Shared helpers for the server tests: tiny real TorchScript tails and their manifests.

Not a test module (it defines no tests; pytest collects nothing here). Tails are real ``torch.jit.script`` modules saved to
disk, so the registry and the server run exactly the code path they run in production.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from server.config import ServerConfig, config_from_dict
from wire.codecs import FeatureCodec
from wire.manifest import TailManifest, save_manifest
from wire.protocol import Hello
from wire.quant import QuantParams, quantize_float_to_int8

CHW = (4, 6, 6)
NUM_CLASSES = 5
QUANT = QuantParams(scale=0.05, zero_point=-3, bits=8)


class TinyTail(nn.Module):
    """1x1 conv -> ReLU -> global average -> linear: small, but a real CNN tail."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class SlowTail(nn.Module):
    """A tail with a fixed cost per call (not per item), like a batched GPU kernel launch."""

    def __init__(self, channels: int, num_classes: int, size: int = 256) -> None:
        super().__init__()
        self.inner = TinyTail(channels, num_classes)
        self.weight = nn.Parameter(torch.randn(size, size) / size**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.weight
        for _ in range(40):
            y = torch.tanh(y @ self.weight)
        return self.inner(x) + 0.0 * y.sum()


#: PoisonTail's trigger: the largest value QUANT can represent, 0.05 * (127 + 3) = 6.5, sits
#: just above it. Honest frames built by ``random_payload`` never reach it (6.5 sigma).
POISON_AT = 6.49


class PoisonTail(nn.Module):
    """A real tail with the two failure modes a hostile frame can trigger in a real one.

    Why: with a validated quantization no payload can make TinyTail's output non-finite, yet
    a production tail can still overflow (huge activations) or raise (a kernel refusing an
    input) on one frame. This tail does both on inputs a hostile client can produce: channel 0
    at (0, 0) at the top of the range makes ``log`` of a negative number, so that frame's
    logits are NaN; channel 1 at (0, 0) at the top makes the whole call raise. For every
    other input the log term is a per-row constant, which softmax ignores.
    """

    def __init__(self, channels: int, num_classes: int, poison_at: float = POISON_AT) -> None:
        super().__init__()
        self.inner = TinyTail(channels, num_classes)
        self.poison_at = poison_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 1, 0, 0] >= self.poison_at).any()):
            raise RuntimeError("input outside what this tail can compute")
        return self.inner(x) + torch.log(self.poison_at - x[:, 0, 0, 0])[:, None]


def make_tail(
    directory: Path,
    model_id: str = "tiny-model",
    *,
    chw: tuple[int, int, int] = CHW,
    num_classes: int = NUM_CLASSES,
    bits: int = 8,
    codec: str = "raw",
    seed: int = 0,
    slow: bool = False,
    poison: bool = False,
    labels: list[str] | None = None,
    manifest_overrides: dict[str, Any] | None = None,
) -> tuple[Path, nn.Module]:
    """Write ``tail.pt`` + ``tail.json`` into directory; return (directory, eager module)."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    module: nn.Module
    if poison:
        module = PoisonTail(chw[0], num_classes)
    elif slow:
        module = SlowTail(chw[0], num_classes)
    else:
        module = TinyTail(chw[0], num_classes)
    module.eval()
    torch.jit.script(module).save(str(directory / "tail.pt"))
    fields: dict[str, Any] = {
        "model_id": model_id,
        "input_chw": list(chw),
        "num_classes": num_classes,
        "labels": labels if labels is not None else [f"class-{i}" for i in range(num_classes)],
        "codec": {"name": codec, "bits": bits, "params": {}},
        "split": {"backbone": "tiny", "point": "test"},
        "extra": {},
    }
    fields.update(manifest_overrides or {})
    save_manifest(TailManifest(**fields), directory / "tail.json")
    return directory, module


def tail_for_head(
    head_manifest: Path, directory: Path, labels: Sequence[str] = ("ant", "bee", "cat")
) -> Path:
    """A tail matching a head's ``head.json`` (model_id, bottleneck shape, codec), one class
    per label: what a daemon-against-server test pairs with ``cached_head``."""
    m = json.loads(head_manifest.read_text())
    tail_dir, _ = make_tail(
        directory,
        model_id=m["model_id"],
        chw=tuple(m["bottleneck_chw"]),
        num_classes=len(labels),
        bits=m["codec"]["bits"],
        codec=m["codec"]["name"],
        labels=list(labels),
    )
    return tail_dir


def server_config(model_dirs: list[Path], base: Path, **sections: dict[str, Any]) -> ServerConfig:
    """A config on an ephemeral TCP port with metrics on an ephemeral HTTP port."""
    data: dict[str, Any] = {
        "server": {"bind": ["tcp://127.0.0.1:*"], "linger_ms": 200},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "compute": {"threads": 1},
        "log": {"level": "warning"},
        "models": [{"path": str(d)} for d in model_dirs],
    }
    for key, value in sections.items():
        if key == "models":
            data["models"] = value
        else:
            data.setdefault(key, {}).update(value)
    return config_from_dict(data, base)


def hello_for(
    model_id: str = "tiny-model",
    *,
    chw: tuple[int, int, int] = CHW,
    quant: QuantParams = QUANT,
    codec: str = "raw",
    codec_params: dict | None = None,
    max_payload: int = 1 << 20,
    device_name: str = "test-device",
) -> Hello:
    return Hello(
        model_id=model_id,
        tensor_shape=chw,
        dtype="int8",
        scale=quant.scale,
        zero_point=quant.zero_point,
        bits=quant.bits,
        codec=codec,
        codec_params=codec_params or {},
        device_name=device_name,
        max_payload=max_payload,
    )


def random_payload(
    rng: np.random.Generator,
    *,
    chw: tuple[int, int, int] = CHW,
    quant: QuantParams = QUANT,
    codec: str = "raw",
) -> tuple[bytes, np.ndarray]:
    """An encoded bottleneck and the float tensor the server should decode it to."""
    x = rng.normal(0.0, 1.0, size=chw).astype(np.float32)
    q = quantize_float_to_int8(x, quant)
    fc = FeatureCodec(chw, quant, codec)
    payload = fc.encode_int8(q, layout="CHW")
    return payload, fc.decode_float(payload)


def expected_topk(module: nn.Module, x: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    with torch.inference_mode():
        probs = torch.softmax(module(torch.from_numpy(x[None])), dim=1)[0]
        scores, ids = probs.topk(k)
    return ids.tolist(), scores.tolist()
