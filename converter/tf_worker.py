"""ONNX -> onnx2tf -> TFLiteConverter (full int8), run in its own process.

Why a subprocess: onnx2tf calls ``sys.exit`` on errors, prints to stdout, and TensorFlow's
C++ runtime logs to fd 2 regardless of Python settings. Isolating it keeps the CLI's
output clean (the log goes to a file and is parsed for the failing op), keeps TensorFlow
out of the parent process, and turns any crash into a reportable error.

Protocol: ``python -m converter.tf_worker JOB_DIR`` reads ``JOB_DIR/model.onnx``,
``JOB_DIR/calib.npy`` (float32 N×H×W×3 in [0, 1]) and writes ``JOB_DIR/head_int8.tflite``
plus ``JOB_DIR/result.json`` (``{"ok": true}`` or ``{"ok": false, "kind": ..., ...}``).
Progress (the calibration bar) goes to the original stderr.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"

_ONNX_OP_TYPE = re.compile(r"onnx_op_type:\s*([A-Za-z0-9_]+)")
_ONNX_OP_NAME = re.compile(r"onnx_op_name:\s*([^\s]+)")
_TFL_OP = re.compile(
    r"error: '((?:tf|tfl)\.[A-Za-z0-9_]+)' op is neither a custom op nor a flex op"
)
_TFL_QUANT = re.compile(r"[Qq]uantization not yet supported for op:\s*'?([A-Za-z0-9_.]+)'?")
_TF_OP_BARE = re.compile(r"'((?:tf|tfl)\.[A-Za-z0-9_]+)' op")
_KERAS_LAYER = re.compile(r'"model/([^"@]+)@')


def _write_sample_file(calib, workdir: Path) -> None:
    """onnx2tf downloads this file for its own accuracy check unless it is present."""
    import numpy as np

    n = calib.shape[0]
    idx = np.arange(20) % n
    h, w = calib.shape[1:3]
    ys = (np.arange(128) * h // 128).clip(0, h - 1)
    xs = (np.arange(128) * w // 128).clip(0, w - 1)
    sample = calib[idx][:, ys][:, :, xs].astype(np.float32)
    np.save(workdir / ONNX2TF_SAMPLE, sample)


def classify_log(log: str, stage: str) -> dict:
    """Turn a failure log into a result record naming the op where the log lets us.

    The parent maps names back to the ONNX graph (it holds the model), so this only
    extracts what the tools printed.
    """
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    detail = next(
        (ln.strip() for ln in reversed(lines) if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln)),
        lines[-1].strip() if lines else "no output",
    )
    if stage == "onnx2tf":
        op = _ONNX_OP_TYPE.findall(log)
        name = _ONNX_OP_NAME.findall(log)
        if op or name:
            return {
                "ok": False,
                "kind": "onnx2tf_op",
                "onnx_op_type": op[-1] if op else None,
                "onnx_op_name": name[-1] if name else None,
                "detail": detail[:300],
            }
    else:
        m = _TFL_OP.search(log) or _TFL_QUANT.search(log) or _TF_OP_BARE.search(log)
        if m:
            layer = _KERAS_LAYER.search(log)
            return {
                "ok": False,
                "kind": "tflite_op",
                "tf_op": m.group(1),
                "layer": layer.group(1) if layer else None,
                "detail": "no full-integer TFLite kernel",
            }
    return {"ok": False, "kind": "backend", "stage": stage, "message": detail[:500]}


# Ops whose int8 kernels derive their requantisation from the output tensor's own scale, so
# the output quantisation can be set after conversion. Others (MAX_POOL_2D, RESHAPE, ...)
# require output scale == input scale, and LOGISTIC/TANH have fixed output scales.
PINNABLE_OUTPUT_OPS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "SUB",
    "MUL",
    "QUANTIZE",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "LEAKY_RELU",
}


def pin_output_quantization(blob: bytes, scale: float, zero_point: int) -> tuple[bytes, str]:
    """Give the model's output tensor a fixed (scale, zero_point); returns (model, last op).

    Why: training simulates the int8 bottleneck with scale out_max/255 (a bounded activation
    makes the range known in advance), while calibration would pick the range it happens to
    observe. Setting the output tensor's quantisation makes the last op requantise to
    exactly the grid the tail was trained on; the kernel computes its multiplier (and the
    fused ReLU6 clamp) from the tensor scales at prepare time.
    """
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(blob))
    graph = model.subgraphs[0]
    out_idx = int(graph.outputs[0])
    producer = next(op for op in graph.operators if out_idx in list(op.outputs))
    op_name = fbu.opcode_to_name(model, producer.opcodeIndex)
    if op_name not in PINNABLE_OUTPUT_OPS:
        raise PinError(op_name)
    q = graph.tensors[out_idx].quantization
    q.scale = [float(scale)]
    q.zeroPoint = [int(zero_point)]
    return bytes(fbu.convert_object_to_bytearray(model)), op_name


class PinError(Exception):
    pass


def run(job: Path, progress_stream) -> dict:
    import numpy as np

    calib = np.load(job / "calib.npy")
    workdir = job / "work"
    workdir.mkdir(exist_ok=True)
    _write_sample_file(calib, workdir)
    os.chdir(workdir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    import onnx2tf
    import tensorflow as tf
    from tqdm import tqdm

    timings["import_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        keras_model = onnx2tf.convert(
            input_onnx_file_path=str(job / "model.onnx"),
            output_folder_path=str(workdir / "saved_model"),
            non_verbose=True,
            disable_model_save=True,
        )
    except BaseException:  # onnx2tf reports errors with sys.exit(1)
        traceback.print_exc()
        sys.stdout.flush()
        return classify_log(Path(job / "worker.log").read_text(errors="replace"), "onnx2tf")
    timings["onnx2tf_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()

    def representative():
        for i in tqdm(
            range(calib.shape[0]),
            desc="calibrating int8 ranges",
            unit="img",
            file=progress_stream,
            disable=progress_stream is None,
        ):
            yield [calib[i : i + 1]]

    try:
        conv = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
        blob = conv.convert()
    except BaseException as exc:
        traceback.print_exc()
        sys.stdout.flush()
        log = Path(job / "worker.log").read_text(errors="replace") + "\n" + str(exc)
        return classify_log(log, "tflite")
    timings["tflite_s"] = time.perf_counter() - t0
    spec = json.loads((job / "job.json").read_text()) if (job / "job.json").exists() else {}
    if spec.get("float_tflite"):  # for size/speed comparisons (benchmarks), never deployed
        (job / "head_float32.tflite").write_bytes(
            tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
        )
    pinned = spec.get("output_quant")
    if pinned:
        try:
            blob, _last = pin_output_quantization(blob, pinned["scale"], pinned["zero_point"])
        except PinError as exc:
            return {
                "ok": False,
                "kind": "pin_output",
                "op": str(exc),
                "message": f"the head's last op is {exc}, whose int8 output must keep its "
                "input's scale; the output range cannot be fixed",
            }
    (job / "head_int8.tflite").write_bytes(blob)
    versions = {"tensorflow": tf.__version__, "onnx2tf": onnx2tf.__version__}
    return {"ok": True, "timings": timings, "versions": versions}


def main(argv: list[str]) -> int:
    job = Path(argv[0]).resolve()
    log_fd = os.open(job / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    progress_fd = os.dup(2)
    progress_stream = os.fdopen(progress_fd, "w") if "--progress" in argv else None
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    try:
        result = run(job, progress_stream)
    except BaseException:
        traceback.print_exc()
        result = {
            "ok": False,
            "kind": "backend",
            "stage": "worker",
            "message": traceback.format_exc().strip().splitlines()[-1],
        }
    (job / "result.json").write_text(json.dumps(result))
    if progress_stream is not None:
        progress_stream.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    sys.exit(main(sys.argv[1:]))
