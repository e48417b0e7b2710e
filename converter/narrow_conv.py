"""Split a wide-kernel conv on few input channels (the 7×7 RGB stem) into two int8-friendly convs.

Why: XNNPACK's int8 GEMM kernels (x86 AVX2 ``…c8``, ARM NEON ``c8``/``c2s4``) pack the
reduction dimension of a convolution in blocks of 8 channels *per kernel tap*. A 7×7 conv on
3 RGB channels therefore does 49 × 8 = 392 multiply-adds per output value where 147 are
useful: measured on this machine (issue 12) the ResNet stem alone took 10.6 ms of the int8
head's 18.2 ms, against 1.9 ms for the same conv in float32 (whose kernels need no such
padding). Everything else in the head ran at float32 speed.

The rewrite turns ``Conv(k_h×k_w, stride (s_h, s_w), pads)`` on ``C`` channels into
  1. an *im2col row* conv: ``1×k_w``, stride ``(1, s_w)``, horizontal pads, ``C → k_w·C``
     channels with one-hot weights (output channel ``dx·C + c`` copies channel ``c`` at
     column offset ``dx``), no bias;
  2. a *column* conv: ``k_h×1``, stride ``(s_h, 1)``, vertical pads, ``k_w·C → C_out``, the
     original weights rearranged, the original bias.
For the 7×7 stem that is 7 × 24 = 168 packed multiply-adds per output (21 channels rounded
up to 24) plus a cheap copy conv, instead of 392. It is exact in float: the first conv only
copies values (zero padding stays zero), and the second sums the same products. In int8
the copies keep their input's range, so calibration gives them the input's scale and the
requantisation is the identity (the benchmark's verification figures are unchanged).

Applied only where the packed cost model says it pays (see ``_worth_splitting``): a 3×3
stride-2 conv on RGB (MobileNet/EfficientNet stems) costs the same either way and is left
alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: Reduction-dimension block of XNNPACK's int8 GEMM/IGEMM kernels (``kr`` of the x86 AVX2 and
#: ARM NEON c8 microkernels). ARM dot-product kernels use 4, where the split is about neutral.
PACK = 8
#: Split only if the packed cost drops below this fraction of the original.
MIN_GAIN = 0.8


def _ceil(n: int, m: int = PACK) -> int:
    return -(-n // m) * m


def _initializer(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def packed_macs_per_output(cin: int, cout: int, kh: int, kw: int, sh: int, split: bool) -> int:
    """Multiply-adds an int8 XNNPACK kernel executes per output pixel, with channel packing.

    Unsplit: every one of the ``kh·kw`` taps reads ``ceil8(cin)`` channels for each of
    ``ceil8(cout)`` outputs. Split: the row conv runs at ``s_h`` times the output rows
    (it is not strided vertically), ``kw`` taps × ``ceil8(cin)`` into ``ceil8(kw·cin)``
    channels; the column conv has ``kh`` taps × ``ceil8(kw·cin)`` into ``ceil8(cout)``.
    """
    if not split:
        return kh * kw * _ceil(cin) * _ceil(cout)
    mid = _ceil(kw * cin)
    return sh * kw * _ceil(cin) * mid + kh * mid * _ceil(cout)


def _worth_splitting(cin: int, cout: int, kh: int, kw: int, sh: int) -> bool:
    if kh < 2 or kw < 2:
        return False
    before = packed_macs_per_output(cin, cout, kh, kw, sh, split=False)
    after = packed_macs_per_output(cin, cout, kh, kw, sh, split=True)
    return after < MIN_GAIN * before


def split_narrow_convs(model: onnx.ModelProto) -> list[str]:
    """Rewrite every qualifying ``Conv`` in place; returns the names of the rewritten nodes.

    Qualifying: 2-D, ``group == 1``, no dilation, explicit (or no) pads, constant weights, and
    ``_worth_splitting`` says the packed cost drops by at least ``1 - MIN_GAIN``.
    """
    graph = model.graph
    taken = {init.name for init in graph.initializer} | {
        out for node in graph.node for out in node.output
    }

    def fresh(base: str) -> str:
        name, i = base, 0
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        return name

    rewritten: list[str] = []
    replaced: set[str] = set()
    new_nodes: list[onnx.NodeProto] = []
    for idx, node in enumerate(graph.node):
        plan = _plan(graph, node) if node.op_type == "Conv" else None
        if plan is None:
            new_nodes.append(node)
            continue
        weight, (sh, sw), (pt, pl, pb, pr) = plan
        cout, cin, kh, kw = weight.shape
        label = node.name or f"Conv#{idx}"
        row_w = np.zeros((kw * cin, cin, 1, kw), dtype=weight.dtype)
        for dx in range(kw):
            for c in range(cin):
                row_w[dx * cin + c, c, 0, dx] = 1.0
        # col_w[o, dx*cin + c, dy, 0] = weight[o, c, dy, dx]
        col_w = np.ascontiguousarray(weight.transpose(0, 3, 1, 2).reshape(cout, kw * cin, kh, 1))
        row_w_name, col_w_name = fresh(f"{label}_im2col_row_w"), fresh(f"{label}_columns_w")
        graph.initializer.append(numpy_helper.from_array(row_w, row_w_name))
        graph.initializer.append(numpy_helper.from_array(col_w, col_w_name))
        mid = fresh(f"{label}_im2col_row")
        new_nodes.append(
            helper.make_node(
                "Conv",
                [node.input[0], row_w_name],
                [mid],
                name=fresh(f"{label}_im2col_row"),
                kernel_shape=[1, kw],
                strides=[1, sw],
                pads=[0, pl, 0, pr],
            )
        )
        new_nodes.append(
            helper.make_node(
                "Conv",
                [mid, col_w_name, *node.input[2:]],
                list(node.output),
                name=fresh(f"{label}_columns"),
                kernel_shape=[kh, 1],
                strides=[sh, 1],
                pads=[pt, 0, pb, 0],
            )
        )
        rewritten.append(label)
        replaced.add(node.input[1])
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_unused_initializers(graph, replaced)
    return rewritten


def _plan(
    graph: onnx.GraphProto, node: onnx.NodeProto
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int, int, int]] | None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if len(node.input) < 2 or attrs.get("group", 1) != 1:
        return None
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad not in ("NOTSET", ""):
        return None
    weight = _initializer(graph, node.input[1])
    if weight is None or weight.ndim != 4 or weight.dtype != np.float32:
        return None
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        return None
    strides = list(attrs.get("strides", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(strides) != 2 or len(pads) != 4:
        return None
    cout, cin, kh, kw = weight.shape
    if not _worth_splitting(cin, cout, kh, kw, strides[0]):
        return None
    return weight, (strides[0], strides[1]), (pads[0], pads[1], pads[2], pads[3])


def _drop_unused_initializers(graph: onnx.GraphProto, names: set[str]) -> None:
    """Drop the replaced weights unless something else still reads them."""
    used = {name for node in graph.node for name in node.input}
    used |= {v.name for v in graph.output} | {v.name for v in graph.input}
    keep = [i for i in graph.initializer if i.name not in names or i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
