"""PyTorch head -> ONNX, the first leg of the route (docs/converter.md).

TorchScript only exports through the legacy exporter (``dynamo=False``); the dynamo
exporter rejects TorchScript parameters. ``torch.export`` programs go through
``dynamo=True``. Export failures caused by an operator without an ONNX mapping become an
``UnsupportedOpError`` naming the operator.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch
from torch import nn

from converter.errors import ConverterBackendError, UnsupportedOpError
from converter.narrow_conv import split_narrow_convs
from converter.onnx_graph import RewriteReport, zero_pad_maxpools

OPSET = 17
INPUT_NAME = "pixels"
OUTPUT_NAME = "bottleneck"

_ATEN_OP = re.compile(r"(aten(?:::|\.)[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")
_NODE = re.compile(r"node[ :'\"`]+([A-Za-z0-9_.]+)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _captured_fds(sink: io.StringIO) -> Iterator[None]:
    """Capture what C++ code writes to fds 1 and 2 (the legacy exporter dumps its IR there)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for fd in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, dup in saved.items():
                os.dup2(dup, fd)
                os.close(dup)
            tmp.seek(0)
            sink.write(tmp.read().decode(errors="replace"))


def _torch_location(text: str, op: str) -> str:
    """Module scope and source line of ``op`` from the IR dump the exporter attaches."""
    for line in text.splitlines():
        if f"{op}(" not in line:
            continue
        scope = re.search(r"scope: ([^#]+)", line)
        src = re.search(r"# ([^\s]+:\d+)", line)
        parts = []
        if scope:
            # "a.NormalizedHead::/H::head/...": keep the module path after the wrapper
            path = scope.group(1).strip().split("::/", 1)[-1]
            parts.append(f"module {path}")
        if src:
            parts.append(src.group(1))
        if parts:
            return ", ".join(parts)
    node = _NODE.search(text)
    return f"node {node.group(1)}" if node else "the head's forward"


def export_onnx(
    wrapped: nn.Module,
    kind: str,
    hw: tuple[int, int],
    path: Path,
    split_convs: bool = True,
) -> RewriteReport:
    """Export, apply the int8-safety rewrites and (``split_convs``) the int8-speed rewrite
    of wide convs on few channels (``converter.narrow_conv``); returns what was rewritten."""
    example = (torch.rand(1, 3, *hw),)
    buf = io.StringIO()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(buf),
            contextlib.redirect_stderr(buf),
            _captured_fds(buf),
        ):
            warnings.simplefilter("ignore")
            if kind == "torchscript":
                torch.onnx.export(
                    wrapped,
                    example,
                    str(path),
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    do_constant_folding=True,
                )
            else:
                program = torch.onnx.export(
                    wrapped,
                    example,
                    dynamo=True,
                    opset_version=18,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    optimize=True,
                    verbose=False,
                )
                program.save(str(path))
    except Exception as exc:
        text = f"{exc}\n{exc.__cause__ or ''}\n{buf.getvalue()}"
        m = _ATEN_OP.search(text)
        if m:
            op = m.group(1)
            if op.startswith("aten."):
                op = "aten::" + op.split(".", 1)[1].split(".")[0]
            raise UnsupportedOpError(
                op, _torch_location(text, op), "PyTorch -> ONNX export", "no ONNX mapping"
            ) from None
        raise ConverterBackendError(f"ONNX export failed: {_first_line(exc)}") from None
    model = simplify(onnx.load(str(path)))
    report = zero_pad_maxpools(model)
    if split_convs:
        report.narrow_conv_split = split_narrow_convs(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return report


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold and fuse with onnxsim (a dependency of onnx2tf) before conversion.

    Why: a TF-"SAME" head (EfficientNet-Lite) exports as explicit ``Pad`` ops whose pads are
    computed tensors; onnx2tf then transposes them into the wrong (channel) axis and the
    conversion fails. Folded, the pads become constants and fuse into the ``Conv``'s own
    (asymmetric) ``pads`` attribute, which onnx2tf handles. If simplification fails or
    cannot be checked, the unsimplified graph is kept (it is what worked before).
    """
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception:
        return model
    return simplified if ok else model
