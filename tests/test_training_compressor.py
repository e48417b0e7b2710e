"""Compressor in the loop: forward is the wire codec, backward is the identity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.bottleneck import SplitNet, split_model  # noqa: E402
from training.compressor import (  # noqa: E402
    CompressorLayer,
    quant_params_for,
    quantize_roundtrip,
    straight_through,
)
from training.models import create_model  # noqa: E402
from wire.quant import QuantParams  # noqa: E402


def test_scale_matches_a_bounded_int8_head() -> None:
    qp = quant_params_for(6.0, bits=8)
    assert qp == QuantParams(scale=6.0 / 255.0, zero_point=-128, bits=8)
    fn = quantize_roundtrip(qp)
    x = np.array([0.0, 6.0, 3.0, 1e-4], dtype=np.float32).reshape(1, 1, 2, 2)
    y = fn(x)
    assert y[0, 0, 0, 0] == 0.0  # real zero survives exactly (zero_point = -128)
    assert y[0, 0, 0, 1] == pytest.approx(6.0)
    assert abs(y[0, 0, 1, 0] - 3.0) <= qp.scale / 2 + 1e-6


def test_forward_is_the_codec_and_backward_is_identity() -> None:
    qp = quant_params_for(6.0, bits=2)  # 4 levels: the forward visibly changes values
    x = torch.tensor([[[[0.3, 1.2], [2.9, 5.0]]]], requires_grad=True)
    y = straight_through(x, quantize_roundtrip(qp))
    assert torch.allclose(y.detach(), torch.from_numpy(quantize_roundtrip(qp)(x.detach().numpy())))
    assert not torch.allclose(y.detach(), x.detach())
    weights = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]]])
    (y * weights).sum().backward()
    assert torch.equal(x.grad, weights)  # d/dx of sum(w * codec(x)) passed straight through


def test_gradient_reaches_the_head_through_the_codec() -> None:
    torch.manual_seed(0)
    model = create_model("resnet_small", num_classes=4)
    head, tail = split_model(model, after="rb1", channels=2, stride=2, input_size=(28, 28))
    comp = CompressorLayer(quantize_roundtrip(quant_params_for(6.0, bits=4)))
    net = SplitNet(head, tail, comp).train()
    x = torch.rand(8, 3, 28, 28)
    loss = torch.nn.functional.cross_entropy(net(x), torch.arange(8) % 4)
    loss.backward()
    g = head.body[0][0].weight.grad  # the very first conv, upstream of the codec
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_disabled_compressor_is_identity() -> None:
    z = torch.rand(2, 3, 4, 4)
    assert torch.equal(CompressorLayer(None)(z), z)


def test_training_forward_is_byte_for_byte_the_wire_codec() -> None:
    """The layer's forward equals decoding what the device would actually send."""
    from training.compressor import CodecConfig, wire_roundtrip
    from wire.codecs import FeatureCodec

    shape = (4, 7, 7)
    rng = np.random.default_rng(0)
    z = (rng.random((3, *shape)) * 6).astype(np.float32)
    codec = CodecConfig("jpeg", 8, {"quality": 10})
    x = torch.from_numpy(z).requires_grad_(True)
    y = straight_through(x, wire_roundtrip(shape, 6.0, codec))
    fc = FeatureCodec(shape, quant_params_for(6.0, 8), "jpeg", {"quality": 10})
    from wire.quant import quantize_float_to_int8

    for i in range(3):
        payload = fc.encode_int8(quantize_float_to_int8(z[i], fc.quant), layout="CHW")
        assert np.array_equal(y[i].detach().numpy(), fc.decode_float(payload))
    assert float((y.detach() - x.detach()).abs().max()) > fc.quant.scale  # JPEG q10 is lossy
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_random_choice_roundtrip_uses_every_setting_seeded() -> None:
    from training.compressor import RandomChoiceRoundtrip

    calls: list[int] = []

    def make(k: int):
        def fn(x: np.ndarray) -> np.ndarray:
            calls.append(k)
            return x + k

        return fn

    rt = RandomChoiceRoundtrip([make(0), make(1), make(2)], seed=5)
    outs = [float(rt(np.zeros(1, dtype=np.float32))[0]) for _ in range(60)]
    assert set(calls) == {0, 1, 2} and outs == [float(c) for c in calls]
    again = RandomChoiceRoundtrip([make(0), make(1), make(2)], seed=5)
    calls.clear()
    assert [float(again(np.zeros(1, dtype=np.float32))[0]) for _ in range(60)] == outs
