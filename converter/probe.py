"""Load, inspect and run a TFLite model with ai-edge-litert in a separate process.

Why a separate process: a broken int8 model (e.g. a max-pool padded with float-min) does
not raise, it aborts the whole process (SIGABRT) inside ``allocate_tensors``. The converter
must survive that to report it, so every produced model is loaded here first.

This module imports only numpy and the LiteRT interpreter -- it runs in a venv that has
nothing but ``splitfit[device]`` installed.

``python -m converter.probe MODEL IN.npz OUT_DIR [--threads N]``: IN.npz holds ``pixels``
(N×H×W×3 uint8). Writes ``OUT_DIR/outputs.npy`` (raw output tensors) and
``OUT_DIR/details.json`` (input/output specs, op inventory, tensor dtypes). Prints
``stage: NAME`` lines so the parent knows how far it got before any crash.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ALLOWED_DTYPES = ("int8", "uint8", "int32")


def _interpreter(model_path: str, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - fallback interpreter on boards without litert
        from tflite_runtime.interpreter import Interpreter
    return Interpreter(model_path=model_path, num_threads=threads)


def _spec(detail: dict) -> dict:
    scale, zp = detail["quantization"]
    return {
        "name": detail["name"],
        "shape": [int(s) for s in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zp),
    }


def inspect(interp) -> dict:
    """Op inventory and every tensor's dtype; lists the tensors that are not integer."""
    tensors = interp.get_tensor_details()
    by_index = {t["index"]: t for t in tensors}
    ops = interp._get_ops_details()
    producer = {}
    for op in ops:
        for out in op["outputs"]:
            producer[int(out)] = op["op_name"]
    non_integer = []
    for t in tensors:
        name = np.dtype(t["dtype"]).name
        if name not in ALLOWED_DTYPES:
            non_integer.append(
                {
                    "tensor": t["name"],
                    "dtype": name,
                    "produced_by": producer.get(int(t["index"]), "constant/input"),
                }
            )
    is_float = {int(t["index"]) for t in tensors if np.dtype(t["dtype"]).name not in ALLOWED_DTYPES}
    float_ops = []
    for op in ops:
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        touched = [int(i) for i in list(op["inputs"]) + list(op["outputs"]) if int(i) in is_float]
        if touched:
            out = int(op["outputs"][0]) if len(op["outputs"]) else touched[0]
            float_ops.append({"op": op["op_name"], "tensor": by_index[out]["name"]})
    dtype_counts = Counter(np.dtype(t["dtype"]).name for t in tensors)
    return {
        "input": _spec(interp.get_input_details()[0]),
        "output": _spec(interp.get_output_details()[0]),
        "n_inputs": len(interp.get_input_details()),
        "n_outputs": len(interp.get_output_details()),
        "ops": dict(sorted(Counter(op["op_name"] for op in ops).items())),
        "op_sequence": [op["op_name"] for op in ops],
        "tensor_dtypes": dict(sorted(dtype_counts.items())),
        "non_integer_tensors": non_integer,
        "float_ops": float_ops,
        "n_tensors": len(by_index),
    }


def main(argv: list[str]) -> int:
    model, inputs, out_dir = argv[0], argv[1], Path(argv[2])
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 1
    print("stage: load", flush=True)
    interp = _interpreter(model, threads)
    print("stage: inspect", flush=True)
    details = inspect(interp)
    print("stage: allocate_tensors", flush=True)
    interp.allocate_tensors()
    print("stage: invoke", flush=True)
    pixels = np.load(inputs)["pixels"]
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    if list(pixels.shape[1:]) != [int(s) for s in inp["shape"][1:]]:
        print(f"error: inputs {list(pixels.shape)} do not fit {list(inp['shape'])}", flush=True)
        return 2
    results = []
    for i in range(pixels.shape[0]):
        interp.set_tensor(inp["index"], pixels[i : i + 1].astype(inp["dtype"]))
        interp.invoke()
        results.append(interp.get_tensor(out["index"])[0].copy())
    np.save(out_dir / "outputs.npy", np.stack(results))
    (out_dir / "details.json").write_text(json.dumps(details))
    print("stage: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
