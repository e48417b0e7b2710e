"""Backbones, split points and split_model: the cut must be exact, names must be torchvision's."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.bottleneck import SplitNet, split_model  # noqa: E402
from training.models import create_model, list_models  # noqa: E402
from training.models.efficientnet_lite import lite0_weights_path  # noqa: E402

# Names and shapes as torchvision.models.resnet18()/resnet50() report them.
TORCHVISION_RESNET18 = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_mean": (64,),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_var": (128,),
    "layer3.1.bn2.num_batches_tracked": (),
    "layer4.1.conv2.weight": (512, 512, 3, 3),
    "fc.weight": (1000, 512),
    "fc.bias": (1000,),
}
TORCHVISION_RESNET50 = {
    "conv1.weight": (64, 3, 7, 7),
    "layer1.0.conv1.weight": (64, 64, 1, 1),
    "layer1.0.conv3.weight": (256, 64, 1, 1),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer3.5.bn3.weight": (1024,),
    "layer4.2.conv3.weight": (2048, 512, 1, 1),
    "fc.weight": (1000, 2048),
}


@pytest.mark.parametrize(
    ("name", "known", "n_keys", "n_params"),
    [
        ("resnet18", TORCHVISION_RESNET18, 122, 11_689_512),
        ("resnet50", TORCHVISION_RESNET50, 320, 25_557_032),
    ],
)
def test_resnet_state_dict_matches_torchvision(name, known, n_keys, n_params) -> None:
    model = create_model(name)
    sd = model.state_dict()
    for key, shape in known.items():
        assert key in sd, key
        assert tuple(sd[key].shape) == shape, key
    assert len(sd) == n_keys
    assert sum(p.numel() for p in model.parameters()) == n_params
    # A dict with torchvision's names round-trips strictly into a fresh model.
    create_model(name).load_state_dict(sd, strict=True)


def test_registry_lists_names_and_rejects_unknown() -> None:
    assert {"resnet18", "resnet50", "resnet_small", "efficientnet_lite0"} <= set(list_models())
    with pytest.raises(ValueError, match="unknown model 'resnet999'"):
        create_model("resnet999")
    with pytest.raises(ValueError, match="no offline pretrained"):
        create_model("resnet18", pretrained=True)


def test_efficientnet_lite0_loads_shipped_weights_strictly() -> None:
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    model = create_model("efficientnet_lite0")
    assert set(model.state_dict()) == set(state)
    model.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.01)
    pretrained = create_model("efficientnet_lite0", pretrained=True)
    assert torch.equal(pretrained.state_dict()["_fc.weight"], state["_fc.weight"])
    fresh_head = create_model("efficientnet_lite0", num_classes=10, pretrained=True)
    assert fresh_head._fc.out_features == 10
    assert torch.equal(fresh_head._conv_stem.weight, state["_conv_stem.weight"])


@pytest.mark.parametrize(
    ("name", "size"), [("resnet_small", 28), ("resnet18", 64), ("efficientnet_lite0", 96)]
)
def test_segments_compose_to_the_full_forward(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).eval()
    x = torch.randn(2, 3, size, size)
    y = x
    for seg in model.segments():
        y = seg.module(y)
    with torch.no_grad():
        assert torch.allclose(model.classify(y), model(x), atol=1e-5)
        # and an explicit reference that does not go through segments() at all
        if name.startswith("resnet"):
            ref = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            for i in range(model.num_layers):
                ref = getattr(model, f"layer{i + 1}")(ref)
            ref = model.fc(torch.flatten(model.avgpool(ref), 1))
            assert torch.allclose(ref, model(x), atol=1e-5)


@pytest.mark.parametrize("after", ["stem", "rb1", 3, "rb5"])
def test_head_then_tail_equals_split_composition(after) -> None:
    torch.manual_seed(1)
    model = create_model("resnet_small", num_classes=10)
    head, tail = split_model(model, after=after, channels=3, stride=2, input_size=(28, 28))
    net = SplitNet(head, tail).eval()
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        z = head(x)
        manual = z
        # compose by hand from the parts, not via SplitNet
        feat = x
        for m in head.body:
            feat = m(feat)
        assert torch.allclose(head.reduction(feat), z)
        assert tuple(z.shape[1:]) == head.spec.bottleneck_chw
        assert z.min() >= 0 and z.max() <= 6.0
        restored = tail.restoration(manual)
        assert tuple(restored.shape[1:]) == head.spec.feature_chw
        assert torch.allclose(net(x), tail(z), atol=1e-6)


def test_split_leaves_the_backbone_intact_and_copies_weights() -> None:
    model = create_model("resnet_small", num_classes=10).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head, _tail = split_model(model, after="rb2", channels=2, stride=2, input_size=(28, 28))
    with torch.no_grad():
        for p in head.parameters():
            p.add_(1.0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.allclose(head.body[0][0].weight - 1.0, before["conv1.weight"], atol=1e-6)


def test_odd_feature_sizes_are_restored_exactly() -> None:
    model = create_model("efficientnet_lite0", num_classes=5)
    head, tail = split_model(model, after="stage3", channels=4, stride=2, input_size=(100, 100))
    assert head.spec.feature_chw == (40, 13, 13)
    assert head.spec.bottleneck_chw == (4, 7, 7)
    head.eval()
    tail.eval()
    with torch.no_grad():
        assert tuple(tail.restoration(head(torch.rand(1, 3, 100, 100))).shape[1:]) == (40, 13, 13)


def test_split_rejects_bad_arguments() -> None:
    model = create_model("resnet_small")
    with pytest.raises(ValueError, match="unknown split point 'rb99'"):
        split_model(model, after="rb99", channels=2, stride=2)
    with pytest.raises(ValueError, match="out of range"):
        split_model(model, after=17, channels=2, stride=2)
    with pytest.raises(ValueError, match="channels and stride"):
        split_model(model, after=1, channels=0, stride=2)


def test_split_probe_does_not_touch_batchnorm_statistics() -> None:
    model = create_model("resnet_small").train()
    before = model.bn1.running_mean.clone()
    head, tail = split_model(model, after="rb1", channels=2, stride=2, copy_model=False)
    assert torch.equal(model.bn1.running_mean, before)
    assert head.training and tail.training  # mode follows the backbone
    assert split_model(model, after="rb5", channels=2, stride=1)[0].spec.after == "rb5"


def test_eval_mode_classifier_has_no_dropout_noise() -> None:
    """classify() builds a fresh wrapper; it must follow the model's mode, or an eval()'d
    teacher's logits are dropout draws (this silently capped BottleFit agreement once)."""
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", num_classes=7).eval()
    model._dropout = 0.5  # the shipped 0.2, made loud enough to see in four rows
    feats = torch.randn(4, 320, 3, 3)
    with torch.no_grad():
        first, second = model.classify(feats), model.classify(feats)
        pooled = model._bn1(model._conv_head(feats))
        pooled = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(model.act(pooled), 1), 1)
        ref = model._fc(pooled)
    assert torch.equal(first, second)
    assert torch.allclose(first, ref, atol=1e-5)
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model.classify(feats), ref, atol=1e-3)  # dropout in training
