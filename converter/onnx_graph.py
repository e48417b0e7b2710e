"""Rewrites of the exported ONNX graph that make it convert to a loadable full-int8 model.

Padded max-pool: ONNX ``MaxPool(pads=...)`` means "pad with -inf". onnx2tf lowers it to a
PADV2 whose constant is float-min; quantising that gives a tensor with scale ~1e36 and the
int8 model aborts the process (SIGABRT) in ``allocate_tensors``. After a ReLU (the ResNet
stem: conv -> BN -> ReLU -> MaxPool(3, 2, 1)) every value is >= 0 and each pooling window
holds at least one real value, so padding with 0 instead gives bit-identical results; we
insert an explicit ``Pad(0)`` and drop the max-pool's own padding.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

_NONNEGATIVE_PRODUCERS = {"Relu", "Sigmoid", "Softmax", "Abs", "Exp"}


@dataclass
class RewriteReport:
    maxpool_zero_padded: list[str] = field(default_factory=list)
    maxpool_left_padded: list[str] = field(default_factory=list)
    # speed, not correctness: convs split into an im2col row + column conv (narrow_conv)
    narrow_conv_split: list[str] = field(default_factory=list)


def _constant_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    return None


def _is_nonnegative(graph: onnx.GraphProto, node: onnx.NodeProto | None) -> bool:
    if node is None:
        return False
    if node.op_type in _NONNEGATIVE_PRODUCERS:
        return True
    if node.op_type == "Clip" and len(node.input) > 1 and node.input[1]:
        low = _constant_value(graph, node.input[1])
        return low is not None and float(np.min(low)) >= 0.0
    return False


def zero_pad_maxpools(model: onnx.ModelProto) -> RewriteReport:
    """Replace -inf max-pool padding by an explicit zero Pad where the input is >= 0."""
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    report = RewriteReport()
    new_nodes: list[onnx.NodeProto] = []
    for idx, node in enumerate(graph.node):
        if node.op_type == "MaxPool":
            attrs = {a.name: a for a in node.attribute}
            pads = list(attrs["pads"].ints) if "pads" in attrs else []
            auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
            label = node.name or f"MaxPool#{idx}"
            if any(pads) and auto_pad in ("NOTSET", ""):
                if _is_nonnegative(graph, producers.get(node.input[0])):
                    half = len(pads) // 2
                    full = [0, 0, *pads[:half], 0, 0, *pads[half:]]
                    pads_name = f"{label}_zero_pads"
                    graph.initializer.append(
                        numpy_helper.from_array(np.array(full, dtype=np.int64), pads_name)
                    )
                    padded = f"{label}_zero_padded"
                    new_nodes.append(
                        helper.make_node(
                            "Pad",
                            [node.input[0], pads_name],
                            [padded],
                            name=f"{label}_zero_pad",
                            mode="constant",
                        )
                    )
                    node.input[0] = padded
                    attrs["pads"].ints[:] = [0] * len(pads)
                    report.maxpool_zero_padded.append(label)
                else:
                    report.maxpool_left_padded.append(label)
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return report


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))
