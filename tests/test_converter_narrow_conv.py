"""converter.narrow_conv: the stem-conv split that lets XNNPACK's int8 kernels run the stem fast.

The rewrite must be exact (checked with onnxruntime on the original vs rewritten graph),
must produce the two-conv shape the int8 speed comes from, and must leave alone the convs
where it does not pay. The end-to-end effect on a converted model is checked in
``test_converter.py``; the latency in ``benchmarks/converter.py``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converter.narrow_conv import packed_macs_per_output, split_narrow_convs


def _conv_model(
    cin: int,
    cout: int,
    k: tuple[int, int],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    hw: tuple[int, int],
    group: int = 1,
    seed: int = 0,
) -> onnx.ModelProto:
    """x -> Conv(+bias) -> Relu, weights seeded."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(cout, cin // group, *k)).astype(np.float32)
    b = rng.normal(size=(cout,)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, *hw])
    out_hw = [(hw[i] + pads[i] + pads[i + 2] - k[i]) // strides[i] + 1 for i in (0, 1)]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, *out_hw])
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "w", "b"],
            ["c"],
            name="stem",
            kernel_shape=list(k),
            strides=list(strides),
            pads=list(pads),
            group=group,
        ),
        helper.make_node("Relu", ["c"], ["y"], name="act"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [x],
        [y],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    # IR 8: what the installed onnxruntime reads (newer onnx defaults to a newer IR)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: list(helper.get_attribute_value(a)) for a in node.attribute}


@pytest.mark.parametrize(
    ("cin", "cout", "k", "strides", "pads", "hw"),
    [
        (3, 64, (7, 7), (2, 2), (3, 3, 3, 3), (37, 45)),  # ResNet stem, odd sizes
        (3, 32, (5, 7), (2, 1), (2, 3, 1, 2), (30, 33)),  # non-square kernel, asymmetric pads
        (1, 48, (5, 5), (1, 1), (0, 0, 0, 0), (20, 24)),  # grey input, no padding
    ],
)
def test_split_is_exact_and_gives_a_row_conv_and_a_column_conv(cin, cout, k, strides, pads, hw):
    model = _conv_model(cin, cout, k, strides, pads, hw)
    x = np.random.default_rng(1).normal(size=(1, cin, *hw)).astype(np.float32)
    before = _run(model, x)
    assert split_narrow_convs(model) == ["stem"]
    onnx.checker.check_model(model)
    row, col, act = model.graph.node
    assert (row.op_type, col.op_type, act.op_type) == ("Conv", "Conv", "Relu")
    kh, kw = k
    ra, ca = _attrs(row), _attrs(col)
    assert ra["kernel_shape"] == [1, kw] and ra["strides"] == [1, strides[1]]
    assert ra["pads"] == [0, pads[1], 0, pads[3]]
    assert ca["kernel_shape"] == [kh, 1] and ca["strides"] == [strides[0], 1]
    assert ca["pads"] == [pads[0], 0, pads[2], 0]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert inits[row.input[1]].shape == (kw * cin, cin, 1, kw)
    assert inits[col.input[1]].shape == (cout, kw * cin, kh, 1)
    assert col.input[2] == "b" and "w" not in inits  # bias kept, old weight dropped
    after = _run(model, x)
    assert after.shape == before.shape
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("cin", "cout", "k", "strides", "group"),
    [
        (3, 32, (3, 3), (2, 2), 1),  # MobileNet/EfficientNet stem: same packed cost either way
        (3, 16, (7, 7), (2, 2), 1),  # too few outputs to pay for the row conv
        (64, 64, (3, 3), (1, 1), 1),  # already a multiple of 8 channels
        (8, 8, (3, 3), (1, 1), 8),  # depthwise
        (3, 64, (1, 1), (1, 1), 1),  # 1x1: nothing to gather
    ],
)
def test_convs_where_the_split_does_not_pay_are_left_alone(cin, cout, k, strides, group):
    model = _conv_model(cin, cout, k, strides, (1, 1, 1, 1), (16, 16), group=group)
    before = model.SerializeToString()
    assert split_narrow_convs(model) == []
    assert model.SerializeToString() == before


def test_packed_cost_of_the_resnet50_stem():
    """The numbers docs/converter.md quotes: 392 -> 168 (+ the row conv) per output channel."""
    unsplit = packed_macs_per_output(3, 64, 7, 7, 2, split=False)
    split = packed_macs_per_output(3, 64, 7, 7, 2, split=True)
    assert unsplit == 49 * 8 * 64
    assert split == 2 * 7 * 8 * 24 + 7 * 24 * 64
    assert split / unsplit == pytest.approx(0.536, abs=1e-3)
