"""BottleNet's bottleneck unit (Sec. 2.1) and ``split_model``.

Head side: reduction unit = 1×1 conv to C' channels (BN, ReLU), then a k×k conv with stride
s (k > s so every input position is covered, as the paper requires), BN, and a *bounded*
activation (ReLU6). The bound matters for deployment: the converted int8 head has a
per-tensor output scale, and a fixed output range [0, out_max] means that scale is known
at training time — ``quant_params_for`` gives scale = out_max/255, zero_point = -128, and
the compressor in the training loop uses exactly that (see ``docs/data.md`` / manifests).

Tail side: restoration unit = the mirror: a transposed conv with stride s back to the
original spatial size (cropped to the exact size, odd sizes included), BN, ReLU, then a
1×1 conv back to the original channels and BN (+ ReLU when the backbone's features at that
point are non-negative, as after a ResNet block; EfficientNet stage outputs are linear).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from training.models.backbone import SplittableBackbone

DEFAULT_OUT_MAX = 6.0


def _spatial_kernel(stride: int) -> int:
    """Smallest odd kernel strictly larger than the stride (3 for s=1,2; 5 for s=3,4 …)."""
    return stride + 1 if stride % 2 == 0 else stride + 2


class ReductionUnit(nn.Module):
    def __init__(self, cin: int, channels: int, stride: int, out_max: float = DEFAULT_OUT_MAX):
        super().__init__()
        k = _spatial_kernel(stride)
        self.channel = nn.Sequential(
            nn.Conv2d(cin, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, channels, k, stride=stride, padding=(k - 1) // 2, bias=False),
            nn.BatchNorm2d(channels),
        )
        # ReLU6 when the bound is 6 (TFLite fuses it); a clamp otherwise.
        self.bound: nn.Module = nn.ReLU6() if out_max == 6.0 else nn.Hardtanh(0.0, float(out_max))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bound(self.spatial(self.channel(x)))


class RestorationUnit(nn.Module):
    def __init__(
        self,
        channels: int,
        cout: int,
        stride: int,
        out_hw: tuple[int, int],
        *,
        nonnegative: bool,
    ) -> None:
        super().__init__()
        if stride == 1:
            up: nn.Module = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        else:
            up = nn.ConvTranspose2d(channels, channels, stride, stride=stride, bias=False)
        self.spatial = nn.Sequential(up, nn.BatchNorm2d(channels), nn.ReLU())
        self.out_h, self.out_w = int(out_hw[0]), int(out_hw[1])
        layers: list[nn.Module] = [nn.Conv2d(channels, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        if nonnegative:
            layers.append(nn.ReLU())
        self.channel = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.spatial(x)[:, :, : self.out_h, : self.out_w]
        return self.channel(x)


@dataclass(frozen=True)
class SplitSpec:
    """Everything needed to rebuild a split model and to describe it in manifests."""

    model: str
    after: str
    channels: int
    stride: int
    input_hw: tuple[int, int]
    feature_chw: tuple[int, int, int]  # backbone tensor at the split point
    bottleneck_chw: tuple[int, int, int]  # what goes on the wire
    out_max: float = DEFAULT_OUT_MAX

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("input_hw", "feature_chw", "bottleneck_chw"):
            d[key] = list(d[key])
        return d


class SplitHead(nn.Module):
    """Device side: backbone prefix + reduction unit. Output: float bottleneck in [0, out_max]."""

    def __init__(self, body: nn.Sequential, reduction: ReductionUnit) -> None:
        super().__init__()
        self.body = body
        self.reduction = reduction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.body(x))


class SplitTail(nn.Module):
    """Server side: restoration unit + backbone suffix + classifier. Input: dequantized bottleneck."""

    def __init__(self, restoration: RestorationUnit, body: nn.Sequential, classifier: nn.Module):
        super().__init__()
        self.restoration = restoration
        self.body = body
        self.classifier = classifier

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(self.restoration(z)))


def _resolve_after(backbone: SplittableBackbone, after: int | str) -> int:
    """Index of the split segment. Ints count residual blocks/stages from 1 (BottleNet's RBk)."""
    names = backbone.split_points()
    if isinstance(after, str):
        if after not in names:
            raise ValueError(f"unknown split point {after!r}; valid: {', '.join(names)}")
        return names.index(after)
    if not 0 <= after < len(names):
        raise ValueError(f"split index {after} out of range 0..{len(names) - 1} ({names})")
    return after


def split_model(
    model: SplittableBackbone,
    after: int | str,
    channels: int,
    stride: int,
    *,
    input_size: tuple[int, int] | None = None,
    out_max: float = DEFAULT_OUT_MAX,
    model_name: str | None = None,
    copy_model: bool = True,
) -> tuple[SplitHead, SplitTail]:
    """Cut ``model`` after a split point and insert BottleNet's bottleneck unit.

    ``after`` is a split-point name (``"rb1"``, ``"stage3"``) or an int k = the k-th block
    (k=0 is the stem). ``input_size`` (H, W) fixes the restoration's exact output size;
    it defaults to the backbone's design size. The model is deep-copied unless
    ``copy_model=False``, so a trained backbone stays usable as a teacher.
    """
    if channels < 1 or stride < 1:
        raise ValueError(f"channels and stride must be >= 1 (got C'={channels}, s={stride})")
    if out_max <= 0:
        raise ValueError(f"out_max must be > 0 (got {out_max})")
    idx = _resolve_after(model, after)
    if copy_model:
        model = copy.deepcopy(model)
    segs = model.segments()
    hw = tuple(input_size or model.default_input_size)
    was_training = model.training
    device = next(model.parameters()).device
    probe = torch.zeros(1, 3, *hw, device=device)
    body = nn.Sequential(*[s.module for s in segs[: idx + 1]])
    body.eval()  # shape probe only: must not touch BN running statistics
    with torch.no_grad():
        c, h, w = body(probe).shape[1:]
    reduction = ReductionUnit(c, channels, stride, out_max).to(device)
    restoration = RestorationUnit(
        channels, c, stride, (h, w), nonnegative=getattr(model, "features_nonnegative", True)
    ).to(device)
    head = SplitHead(body, reduction).eval()
    tail = SplitTail(
        restoration, nn.Sequential(*[s.module for s in segs[idx + 1 :]]), model.classifier_module()
    )
    with torch.no_grad():
        z = head(probe)
    head.train(was_training)
    tail.train(was_training)
    spec = SplitSpec(
        model=model_name or getattr(model, "registry_name", type(model).__name__.lower()),
        after=segs[idx].name,
        channels=channels,
        stride=stride,
        input_hw=(int(hw[0]), int(hw[1])),
        feature_chw=(int(c), int(h), int(w)),
        bottleneck_chw=tuple(int(v) for v in z.shape[1:]),
        out_max=float(out_max),
    )
    head.spec = spec  # type: ignore[attr-defined]
    tail.spec = spec  # type: ignore[attr-defined]
    return head, tail


class SplitNet(nn.Module):
    """head -> compressor -> tail, the model that is trained end to end (BottleNet Fig. 1)."""

    def __init__(self, head: SplitHead, tail: SplitTail, compressor: nn.Module | None = None):
        super().__init__()
        self.head = head
        self.tail = tail
        self.compressor = compressor if compressor is not None else nn.Identity()

    @property
    def spec(self) -> SplitSpec:
        return self.head.spec  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.compressor(self.head(x)))
