"""Drive the TensorFlow worker (``converter.tf_worker``) and map its failures to errors.

The worker only knows what the tools printed; here the ONNX graph is at hand, so op names
from onnx2tf / TFLiteConverter / the TFLite op inventory are mapped back to ONNX nodes
(whose names carry the PyTorch module path) for the error message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx

from converter.errors import ConverterBackendError, UnsupportedOpError

WORKER_TIMEOUT_S = 900


def run_worker(job: Path, progress: bool) -> dict:
    cmd = [sys.executable, "-m", "converter.tf_worker", str(job)]
    if progress:
        cmd.append("--progress")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    try:
        proc = subprocess.run(cmd, env=env, timeout=WORKER_TIMEOUT_S, cwd=job)
    except subprocess.TimeoutExpired:
        raise ConverterBackendError(
            f"the TensorFlow conversion did not finish within {WORKER_TIMEOUT_S} s"
        ) from None
    result_path = job / "result.json"
    if not result_path.is_file():
        log = (
            (job / "worker.log").read_text(errors="replace")
            if (job / "worker.log").exists()
            else ""
        )
        last = [ln for ln in log.splitlines() if ln.strip()][-1:] or ["no log"]
        raise ConverterBackendError(
            f"the TensorFlow conversion process died (exit {proc.returncode}): {last[0][:300]}"
        )
    result = json.loads(result_path.read_text())
    if not result.get("ok"):
        raise_worker_failure(result, onnx.load(str(job / "model.onnx")))
    return result


def same_op(a: str, b: str) -> bool:
    """'tf.Erf' ~ 'Erf', 'CUMSUM' ~ 'CumSum': op names across ONNX / TF / TFLite."""

    def norm(x: str) -> str:
        return x.split(".", 1)[-1].replace("_", "").lower()

    return norm(a) == norm(b)


def onnx_nodes_of(model: onnx.ModelProto, op: str) -> list[str]:
    return [n.name or n.op_type for n in model.graph.node if same_op(n.op_type, op)]


def raise_worker_failure(result: dict, model: onnx.ModelProto) -> None:
    kind = result.get("kind")
    if kind == "onnx2tf_op":
        name = result.get("onnx_op_name")
        op_type = result.get("onnx_op_type")
        if op_type is None and name is not None:
            op_type = next((n.op_type for n in model.graph.node if n.name == name), "?")
        raise UnsupportedOpError(
            op_type or "?",
            f"ONNX node {name}" if name else "an ONNX node",
            "ONNX -> TensorFlow (onnx2tf)",
            result.get("detail", ""),
        )
    if kind == "pin_output":
        raise UnsupportedOpError(
            result["op"], "the head's last op", "fixing the output range", result["message"]
        )
    if kind == "tflite_op":
        tf_op = result["tf_op"]
        nodes = onnx_nodes_of(model, tf_op)
        if nodes:
            where = "ONNX node " + ", ".join(nodes[:3])
        elif result.get("layer"):
            where = f"TensorFlow layer {result['layer']}"
        else:
            where = "the TensorFlow graph"
        raise UnsupportedOpError(
            tf_op, where, "TensorFlow -> full-int8 TFLite", result.get("detail", "")
        )
    raise ConverterBackendError(
        f"conversion failed at {result.get('stage')}: {result.get('message', '')}"
    )
