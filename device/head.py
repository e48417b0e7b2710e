"""The int8 TFLite head: load, check against its manifest, run.

Why checks at load: a head whose tensors disagree with ``head.json`` would send the server
garbage it cannot detect (shapes still decode). We compare the interpreter's real input/output
shapes, dtypes and output quantization with the manifest once, and refuse to start otherwise.

Interpreter: ai-edge-litert first, tflite-runtime as the fallback (older Pi images).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wire.manifest import HeadManifest, TailManifest, load_head_manifest, sha256_file
from wire.quant import QuantParams


class HeadError(RuntimeError):
    """The head model cannot be used (missing, mismatched with its manifest, no runtime)."""


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise HeadError(
                "no TFLite runtime: install ai-edge-litert (or tflite-runtime)"
            ) from None
    return Interpreter


class ManifestIdentity:
    """A partition's identity as its manifest states it: the model_id that pairs it with the
    server's entry in HELLO, and the class names its answers are scored against.

    Shared by :class:`Head` and ``device.cloud.CloudInput``, whose manifests differ in kind
    (head.json, cloud.json) but name both the same way.
    """

    manifest: HeadManifest | TailManifest

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.labels)


@dataclass(frozen=True)
class HeadOutput:
    """The int8 bottleneck of one frame plus how long the head took."""

    tensor: np.ndarray  # int8, (1, h, w, C) NHWC
    head_ms: float


class Head(ManifestIdentity):
    """One split point: a TFLite interpreter plus the manifest describing its tensors."""

    def __init__(self, name: str, model: Path, manifest: Path, num_threads: int = 1) -> None:
        self.name = name
        if not Path(model).is_file():
            raise HeadError(f"head {name!r}: model file {model} not found")
        try:
            self.manifest: HeadManifest = load_head_manifest(manifest)
        except FileNotFoundError:
            raise HeadError(f"head {name!r}: manifest {manifest} not found") from None
        except (ValueError, KeyError) as exc:
            raise HeadError(f"head {name!r}: bad manifest {manifest}: {exc}") from None
        digest = sha256_file(model)
        if digest != self.manifest.tflite_sha256:
            raise HeadError(
                f"head {name!r}: {model} does not match its manifest {manifest} "
                f"(tflite_sha256 {self.manifest.tflite_sha256[:12]}..., file {digest[:12]}...)"
            )
        Interpreter = _interpreter_class()
        try:
            self._interp = Interpreter(model_path=str(model), num_threads=num_threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise HeadError(f"head {name!r}: cannot load {model}: {exc}") from None
        inp = self._interp.get_input_details()
        out = self._interp.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise HeadError(f"head {name!r}: expected one input and one output tensor")
        self._in = inp[0]
        self._out = out[0]
        self._check(model)
        self.input_hw = (int(self._in["shape"][1]), int(self._in["shape"][2]))
        scale, zp = self._out["quantization"]
        bits = int(self.manifest.codec.get("bits", 8)) if self.manifest.codec else 8
        self.quant = QuantParams(scale=float(scale), zero_point=int(zp), bits=bits)
        self.bottleneck_chw = tuple(int(v) for v in self.manifest.bottleneck_chw)

    def _check(self, model: Path) -> None:
        m = self.manifest
        in_shape = [int(v) for v in self._in["shape"]]
        out_shape = [int(v) for v in self._out["shape"]]
        problems = []
        if in_shape != list(m.input.shape):
            problems.append(f"input shape {in_shape} != manifest {m.input.shape}")
        if np.dtype(self._in["dtype"]) != np.uint8:
            problems.append(f"input dtype {np.dtype(self._in['dtype'])} is not uint8")
        if out_shape != list(m.output.shape):
            problems.append(f"output shape {out_shape} != manifest {m.output.shape}")
        if np.dtype(self._out["dtype"]) != np.int8:
            problems.append(f"output dtype {np.dtype(self._out['dtype'])} is not int8")
        scale, zp = self._out["quantization"]
        if m.output.scale is not None and not np.isclose(scale, m.output.scale, rtol=1e-5):
            problems.append(f"output scale {scale} != manifest {m.output.scale}")
        if m.output.zero_point is not None and int(zp) != int(m.output.zero_point):
            problems.append(f"output zero_point {zp} != manifest {m.output.zero_point}")
        h, w, c = out_shape[1], out_shape[2], out_shape[3]
        if list(m.bottleneck_chw) != [c, h, w]:
            problems.append(f"bottleneck_chw {m.bottleneck_chw} != output (C,H,W) {[c, h, w]}")
        if problems:
            raise HeadError(
                f"head {self.name!r} ({model}) disagrees with its manifest: " + "; ".join(problems)
            )

    def run(self, image: np.ndarray) -> HeadOutput:
        """``image``: uint8 (1, H, W, 3) at the head's input size."""
        t0 = time.perf_counter()
        self._interp.set_tensor(self._in["index"], image)
        self._interp.invoke()
        out = self._interp.get_tensor(self._out["index"])
        return HeadOutput(tensor=out, head_ms=(time.perf_counter() - t0) * 1e3)
