"""Load the produced model in a child process and check it is what the board needs.

``run_probe`` survives a model that aborts the interpreter (see ``converter.probe``);
``check_integer_model`` refuses float tensors (naming the op that holds them), a
non-uint8 input, an input that is not raw pixels (scale 1/255, zero point 0) and a non-int8
output.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

from converter.errors import InvalidModelError, UnsupportedOpError
from converter.tensorflow_stage import onnx_nodes_of

PROBE_TIMEOUT_S = 300


def run_probe(
    model: Path, pixels: np.ndarray, workdir: Path, threads: int = 1, python: str | None = None
) -> tuple[np.ndarray, dict]:
    """Load + run ``model`` on ``pixels`` in a child process; a crash becomes InvalidModelError."""
    inputs = workdir / "probe_inputs.npz"
    np.savez(inputs, pixels=pixels)
    cmd = [python or sys.executable, "-m", "converter.probe", str(model), str(inputs), str(workdir)]
    cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InvalidModelError(
            f"the converted model did not run within {PROBE_TIMEOUT_S} s"
        ) from None
    stages = [
        ln.split(":", 1)[1].strip() for ln in proc.stdout.splitlines() if ln.startswith("stage:")
    ]
    if proc.returncode != 0 or (stages and stages[-1] != "done"):
        at = stages[-1] if stages else "start-up"
        if proc.returncode < 0:
            how = f"crashed with {signal.Signals(-proc.returncode).name}"
        else:
            err = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            how = f"failed ({err[-1][:300] if err else 'exit ' + str(proc.returncode)})"
        raise InvalidModelError(f"the converted model {how} in the TFLite interpreter at {at}")
    return np.load(workdir / "outputs.npy"), json.loads((workdir / "details.json").read_text())


def check_integer_model(details: dict, hw: tuple[int, int], model: onnx.ModelProto) -> None:
    if details["float_ops"]:
        first = details["float_ops"][0]
        nodes = onnx_nodes_of(model, first["op"])
        where = f"ONNX node {', '.join(nodes[:3])}" if nodes else f"tensor {first['tensor']!r}"
        raise UnsupportedOpError(
            first["op"],
            where,
            "full-int8 TFLite",
            "it has no int8 kernel, so the converter left it in float "
            f"({len(details['non_integer_tensors'])} float tensors)",
        )
    bad = details["non_integer_tensors"]
    if bad:
        first = bad[0]
        raise InvalidModelError(
            f"the converted model still holds {len(bad)} non-integer tensor(s), e.g. "
            f"{first['tensor']!r} ({first['dtype']}, produced by {first['produced_by']})"
        )
    inp, out = details["input"], details["output"]
    if details["n_inputs"] != 1 or details["n_outputs"] != 1:
        raise InvalidModelError("the converted model must have exactly one input and one output")
    if inp["dtype"] != "uint8" or inp["shape"] != [1, hw[0], hw[1], 3]:
        raise InvalidModelError(
            f"the converted input is {inp['dtype']} {inp['shape']}, expected uint8 [1, {hw[0]}, {hw[1]}, 3]"
        )
    if abs(inp["scale"] * 255.0 - 1.0) > 1e-4 or inp["zero_point"] != 0:
        raise InvalidModelError(
            f"the converted input has scale {inp['scale']} zero point {inp['zero_point']}; raw "
            "pixels need 1/255 and 0"
        )
    if out["dtype"] != "int8" or len(out["shape"]) != 4:
        raise InvalidModelError(
            f"the converted output is {out['dtype']} {out['shape']}, expected int8 NHWC"
        )
