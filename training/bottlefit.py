"""BottleFit's two-stage training of a bottlenecked split model (seeds 000/001).

Stage 1, head distillation: the student is ``split_model(teacher copy)``. Only the
bottleneck's reduction unit (head side) and restoration unit (tail side) train, so that
``restoration(codec(reduction(f)))`` reproduces the frozen teacher's feature ``f`` at the
split point (MSE). No labels are needed, which is what makes ImageNet models trainable
here from augmented crops of a dozen shipped photos. The head's backbone prefix stays the
teacher's (frozen): its output *is* the teacher feature, so features are computed once and
cached — that, not a shortcut in the recipe, is what fits stage 1 into the CPU budget.

Stage 2, fine-tuning: the head is frozen (as in BottleFit, so the encoder the device runs
and the int8 calibration stay fixed) and the restoration + tail are trained with
knowledge distillation from the teacher's logits (temperature ``T``, weight ``kd_weight``)
plus cross-entropy where labels exist. The frozen head is deterministic, so the decoded
wire tensor ``codec(head(x))`` is cached too and stage 2 never re-runs head or codec.
The tail's BatchNorm statistics stay frozen (eval mode): a handful of photos must not
overwrite ImageNet statistics.

The wire codec (``training.compressor``, straight-through) sits in the loop in both stages.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance
from torch import nn

from training.bottleneck import SplitHead, SplitTail, _resolve_after
from training.compressor import CodecConfig, CompressorLayer, quant_params_for
from training.data.transforms import normalize, pil_to_tensor, random_resized_crop
from training.entropy_model import RateBottleneck

STAGE2_TRAINABLE = ("tail", "restoration", "bottleneck", "all")


@dataclass(frozen=True)
class BottleFitConfig:
    """Schedule and loss knobs of both stages (recorded verbatim in the metrics)."""

    stage1_epochs: int = 8
    stage2_epochs: int = 2
    batch_size: int = 32
    stage1_lr: float = 3e-3
    stage2_lr: float = 3e-4
    temperature: float = 2.0
    kd_weight: float = 1.0  # loss = kd_weight * KD + (1 - kd_weight) * CE (CE on labelled rows)
    # "tail": restoration + tail; "restoration": restoration only; "bottleneck": reduction +
    # restoration (the device-side encoder keeps learning, the teacher's tail stays frozen);
    # "all": reduction + restoration + tail (end-to-end KD; needs hundreds of photos, on a
    # dozen it overfits)
    stage2_train: str = "tail"
    # Stage 1 matches the teacher this many segments *after* the split (0 = at the split),
    # training those tail segments too: the decoder side gets the capacity of a real stage.
    distill_depth: int = 0
    # Half-width of uniform noise added to the reduction's output before the wire codec while
    # the reduction trains (stage 1, and stage 2 with "bottleneck"). The board runs an int8
    # head whose output differs from the float head's by a few int8 steps (6/255 each); with
    # 1-2-bit codes that flips the values sitting near a threshold. Noise during training
    # pushes values off the thresholds and teaches the decoder to tolerate the flips.
    wire_noise: float = 0.0
    # > 0: a learned entropy model on the bottleneck (training.entropy_model) and stage 2's
    # loss gains rate_weight * estimated bytes/frame; needs a stage2_train that trains the
    # reduction ("bottleneck" or "all"), since only the encoder can make features cheap
    rate_weight: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stage1_epochs < 0 or self.stage2_epochs < 0:
            raise ValueError("stage epochs must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ValueError(f"kd_weight must be in [0, 1], got {self.kd_weight}")
        if self.wire_noise < 0:
            raise ValueError(f"wire_noise must be >= 0, got {self.wire_noise}")
        if self.distill_depth < 0:
            raise ValueError(f"distill_depth must be >= 0, got {self.distill_depth}")
        if self.stage2_train not in STAGE2_TRAINABLE:
            raise ValueError(
                f"stage2_train must be one of {STAGE2_TRAINABLE}, got {self.stage2_train!r}"
            )
        if not (self.rate_weight >= 0 and math.isfinite(self.rate_weight)):
            raise ValueError(f"rate_weight must be a finite number >= 0, got {self.rate_weight}")
        if self.rate_weight > 0 and self.stage2_train not in ("bottleneck", "all"):
            raise ValueError(
                "rate_weight > 0 needs stage2_train 'bottleneck' or 'all' (the reduction "
                f"must train to make features cheap), got {self.stage2_train!r}"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["rate_weight"]:
            d.pop("rate_weight")  # run keys (checkpoints, caches) from before stay valid
        return d


@dataclass
class StageHistory:
    """Mean loss per epoch of one stage, plus its wall time."""

    name: str
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0


# ---------------------------------------------------------------- augmentation


@dataclass
class CropJitter:
    """Random resized crop + flip + colour jitter (brightness/contrast/saturation) -> tensor."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    seed: int
    jitter: float = 0.3

    def __call__(self, img: Image.Image) -> torch.Tensor:
        rng = random.Random(self.seed)
        img = random_resized_crop(img.convert("RGB"), self.size, rng, scale=(0.15, 1.0))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(1.0 + rng.uniform(-self.jitter, self.jitter))
        return normalize(pil_to_tensor(img), self.mean, self.std)


# ---------------------------------------------------------------- teacher caching


def teacher_prefix(teacher: nn.Module, after: int | str) -> nn.Sequential:
    """The teacher's layers up to the split point (shares its modules; used frozen)."""
    idx = _resolve_after(teacher, after)
    return nn.Sequential(*[s.module for s in teacher.segments()[: idx + 1]])


@torch.no_grad()
def cache_teacher(
    teacher: nn.Module,
    after: int | str,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features at the split, teacher logits, labels) for every sample of ``batches``."""
    teacher.eval()
    prefix = teacher_prefix(teacher, after)
    idx = _resolve_after(teacher, after)
    suffix = [s.module for s in teacher.segments()[idx + 1 :]]
    feats, logits, labels = [], [], []
    for x, y in progress(batches):
        f = prefix(x)
        h = f
        for m in suffix:
            h = m(h)
        feats.append(f)
        logits.append(teacher.classify(h))
        labels.append(torch.as_tensor(y))
    return torch.cat(feats), torch.cat(logits), torch.cat(labels)


# ---------------------------------------------------------------- the two stages


class StageCheckpoint:
    """Resumable state of one stage, saved atomically after every epoch.

    Holds the weights of the head's reduction and the whole tail (the only things that
    train), the optimiser, LR schedule, both RNGs and the history, so a killed run that is
    started again with the same job continues at the next epoch and ends bit-for-bit
    where an uninterrupted run would (same batches, same steps).
    """

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def save(self, state: dict) -> None:
        if self.path is None:
            return
        from wire.atomicfile import write_atomic

        write_atomic(self.path, lambda tmp: torch.save(state, tmp))


def _stage_parts(
    head: SplitHead,
    tail: SplitTail,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    rate: RateBottleneck | None = None,
) -> dict[str, tuple[Callable[[], object], Callable[[object], object]]]:
    """What a stage checkpoint holds besides the history, by key: (read state, load state).

    One table for saving and restoring, so the two can never disagree on what is kept.
    ``rate``: the entropy model that trains in this stage (stage 2 with a rate weight); its
    prior is what the exported rANS tables come from, so a resumed run must get it back.
    """
    parts: dict[str, tuple[Callable[[], object], Callable[[object], object]]] = {
        "reduction": (head.reduction.state_dict, head.reduction.load_state_dict),
        "tail": (tail.state_dict, tail.load_state_dict),
        "opt": (opt.state_dict, opt.load_state_dict),
        "sched": (sched.state_dict, sched.load_state_dict),
        "gen": (gen.get_state, gen.set_state),
        "torch_rng": (torch.get_rng_state, torch.set_rng_state),
    }
    if rate is not None:
        parts["prior"] = (rate.prior.state_dict, rate.prior.load_state_dict)
    return parts


def _snapshot(parts: dict, hist: StageHistory, epochs: int) -> dict:
    return {
        "epoch": len(hist.losses),
        "epochs": epochs,
        **{key: read() for key, (read, _) in parts.items()},
        "losses": list(hist.losses),
        "wall_s": hist.wall_s,
    }


def _restore(state: dict | None, parts: dict, hist: StageHistory, epochs: int) -> int:
    """Load a stage checkpoint (if any); the number of epochs already done."""
    if state is None:
        return 0
    if state["epochs"] != epochs:
        raise ValueError(
            f"checkpoint was written for {state['epochs']} epochs, this job asks for {epochs}: "
            "delete the checkpoint folder or keep the schedule"
        )
    missing = sorted(set(parts) - set(state))
    if missing:
        raise ValueError(
            f"checkpoint lacks {', '.join(missing)} (written by an older version that did not "
            "save it): delete the checkpoint file to train this stage again"
        )
    for key, (_, load) in parts.items():
        load(state[key])
    hist.losses = list(state["losses"])
    hist.wall_s = float(state["wall_s"])
    return int(state["epoch"])


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def _train_epoch(
    n: int,
    batch_size: int,
    gen: torch.Generator,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> float:
    """One pass over ``n`` cached samples in shuffled batches; the sample-weighted mean loss."""
    total, count = 0.0, 0
    for idx in progress(_batches(n, batch_size, gen)):
        loss = loss_of(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach()) * len(idx)
        count += len(idx)
    return total / max(count, 1)


def stage1_parameters(head: SplitHead, tail: SplitTail, depth: int = 0) -> list[nn.Parameter]:
    """What stage 1 trains: the bottleneck (reduction on the head, restoration on the tail)
    plus the first ``depth`` tail segments when distilling deeper than the split."""
    extra = [p for seg in list(tail.body)[:depth] for p in seg.parameters()]
    return [*head.reduction.parameters(), *tail.restoration.parameters(), *extra]


@torch.no_grad()
def deeper_targets(tail: SplitTail, feats: torch.Tensor, depth: int, bs: int = 64) -> torch.Tensor:
    """Teacher features ``depth`` segments after the split (tail segments are still the teacher's)."""
    if depth == 0:
        return feats
    segs = nn.Sequential(*list(tail.body)[:depth]).eval()
    return torch.cat([segs(feats[i : i + bs]) for i in range(0, len(feats), bs)])


def stage2_parameters(
    tail: SplitTail, which: str, head: SplitHead | None = None
) -> list[nn.Parameter]:
    if which == "restoration":
        return list(tail.restoration.parameters())
    if which in ("bottleneck", "all"):
        if head is None:
            raise ValueError(f"stage2_train={which!r} needs the head (its reduction trains)")
        rest = tail.parameters() if which == "all" else tail.restoration.parameters()
        return [*head.reduction.parameters(), *rest]
    return list(tail.parameters())


def _param_groups(params: list[nn.Parameter], rate: RateBottleneck | None, lr: float) -> list[dict]:
    """One group for the model; with a rate model its prior in a second group at 10x the
    rate and without weight decay (as ``training.pipeline.rate_param_groups``): the density
    has to follow the moving features, and decay would flatten it and overstate the rate."""
    if rate is None:
        return [{"params": params, "lr": lr}]
    prior = {id(p) for p in rate.prior.parameters()}
    return [
        {"params": [p for p in params if id(p) not in prior], "lr": lr},
        {"params": list(rate.prior.parameters()), "lr": 10 * lr, "weight_decay": 0.0,
         "prior": True},
    ]  # fmt: skip


def _freeze_all_but(modules: Iterable[nn.Module], trainable: list[nn.Parameter]) -> None:
    keep = {id(p) for p in trainable}
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(id(p) in keep)


@torch.no_grad()
def match_output_statistics(tail: SplitTail, feats: torch.Tensor) -> None:
    """Start the restoration's last BatchNorm at the teacher features' per-channel mean/std.

    EfficientNet stage outputs are linear projections with std ~5-10; from the default
    affine (1, 0) Adam needs thousands of steps just to reach that scale, which the CPU
    budget does not have. Matching the marginal statistics first leaves stage 1 to learn
    the content.
    """
    bns = [m for m in tail.restoration.channel if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    bn = bns[-1]
    bn.weight.copy_(feats.std(dim=(0, 2, 3)).clamp_min(1e-3))
    bn.bias.copy_(feats.mean(dim=(0, 2, 3)))


def jitter(z: torch.Tensor, half_width: float) -> torch.Tensor:
    """``z`` plus U(-w, w) noise in training (see ``BottleFitConfig.wire_noise``)."""
    if half_width <= 0:
        return z
    return z + (torch.rand_like(z) * 2.0 - 1.0) * half_width


def stage1_head_distillation(
    head: SplitHead,
    tail: SplitTail,
    compressor: nn.Module,
    feats: torch.Tensor,
    cfg: BottleFitConfig,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
    *,
    checkpoint: StageCheckpoint | None = None,
    batch_progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> StageHistory:
    """Train reduction + restoration so restoration(codec(reduction(f))) ≈ f (MSE).

    ``feats`` may be stored in half precision (early cuts: thousands of 24×56×56 maps);
    every batch is cast to float32 before it is used.
    """
    hist = StageHistory("stage1_head_distillation")
    depth = cfg.distill_depth
    if depth > len(tail.body):
        raise ValueError(f"distill_depth {depth} > {len(tail.body)} segments after the split")
    targets = deeper_targets(tail, feats, depth)  # before any tail weight moves
    match_output_statistics(tail, feats[:2048].float())
    deeper = nn.Sequential(*list(tail.body)[:depth])
    params = stage1_parameters(head, tail, depth)
    _freeze_all_but((head, tail), params)
    opt = torch.optim.AdamW(params, lr=cfg.stage1_lr, weight_decay=1e-4)
    n_steps = max(1, cfg.stage1_epochs * math.ceil(len(feats) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.stage1_lr, total_steps=n_steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt = checkpoint or StageCheckpoint(None)
    parts = _stage_parts(head, tail, opt, sched, gen)
    done = _restore(ckpt.load(), parts, hist, cfg.stage1_epochs)
    for _ in progress(range(done, cfg.stage1_epochs)):
        t0 = time.perf_counter()
        head.body.eval()
        head.reduction.train()
        tail.restoration.train()
        deeper.eval()  # frozen BN statistics; weights train when depth > 0

        def loss_of(idx: torch.Tensor) -> torch.Tensor:
            z = compressor(jitter(head.reduction(feats[idx].float()), cfg.wire_noise))
            return F.mse_loss(deeper(tail.restoration(z)), targets[idx].float())

        n = len(feats)
        hist.losses.append(
            _train_epoch(n, cfg.batch_size, gen, loss_of, opt, sched, batch_progress)
        )
        hist.wall_s += time.perf_counter() - t0
        ckpt.save(_snapshot(parts, hist, cfg.stage1_epochs))
    return hist


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    kd_weight: float,
) -> torch.Tensor:
    """Hinton KD (T²-scaled KL at temperature T) blended with CE on rows whose label >= 0."""
    t = temperature
    kd = F.kl_div(
        F.log_softmax(student / t, 1),
        F.log_softmax(teacher / t, 1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)
    labelled = labels >= 0
    if kd_weight >= 1.0 or not bool(labelled.any()):
        return kd
    ce = F.cross_entropy(student[labelled], labels[labelled])
    return kd_weight * kd + (1.0 - kd_weight) * ce


@torch.no_grad()
def wire_tensors(
    head: SplitHead, compressor: nn.Module, feats: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """What the tail receives for cached features: codec(reduction(f)), frozen head."""
    head.eval()
    return torch.cat(
        [
            compressor(head.reduction(feats[i : i + batch_size].float()))
            for i in range(0, len(feats), batch_size)
        ]
    )


def stage2_finetune(
    tail: SplitTail,
    wire: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    cfg: BottleFitConfig,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
    *,
    head: SplitHead | None = None,
    compressor: nn.Module | None = None,
    checkpoint: StageCheckpoint | None = None,
    batch_progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> StageHistory:
    """Fine-tune restoration (+ tail) on cached wire tensors with KD (+ CE).

    With ``stage2_train`` "bottleneck" or "all" the reduction keeps training too, so
    ``wire`` must then hold the cached *features at the split* and ``head``/``compressor``
    are required: the forward pass is ``tail(compressor(head.reduction(f)))``.
    """
    hist = StageHistory("stage2_finetune")
    params = stage2_parameters(tail, cfg.stage2_train, head)
    rate = compressor if isinstance(compressor, RateBottleneck) and cfg.rate_weight > 0 else None
    if rate is not None:
        params = [*params, *rate.prior.parameters()]
    encode: Callable[[torch.Tensor], torch.Tensor] = lambda x: x.float()  # noqa: E731
    reduction_trains = cfg.stage2_train in ("bottleneck", "all")
    if reduction_trains:
        if head is None or compressor is None:
            raise ValueError(f"stage2_train={cfg.stage2_train!r} needs head= and compressor=")
        _freeze_all_but((head,), params)
        encode = lambda f: compressor(jitter(head.reduction(f.float()), cfg.wire_noise))  # noqa: E731
    _freeze_all_but((tail,), params)
    opt = torch.optim.AdamW(_param_groups(params, rate, cfg.stage2_lr), weight_decay=1e-4)
    n_steps = max(1, cfg.stage2_epochs * math.ceil(len(wire) / cfg.batch_size))
    max_lr = [cfg.stage2_lr * (10.0 if g.get("prior") else 1.0) for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr, total_steps=n_steps)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    ckpt = checkpoint or StageCheckpoint(None)
    parts = _stage_parts(head, tail, opt, sched, gen, rate) if head is not None else {}
    done = _restore(ckpt.load(), parts, hist, cfg.stage2_epochs) if head is not None else 0
    if rate is not None and done == 0 and head is not None:
        with torch.no_grad():
            head.reduction.eval()
            z = torch.cat([head.reduction(wire[i : i + 64].float()) for i in range(0, 512, 64)])
        rate.fit_prior(z, seed=cfg.seed + 2)  # price the features, not the prior's init
    for _ in progress(range(done, cfg.stage2_epochs)):
        t0 = time.perf_counter()
        tail.eval()  # frozen BN statistics and no dropout in the backbone suffix
        tail.restoration.train()
        if head is not None and reduction_trains:
            head.reduction.train()

        def loss_of(idx: torch.Tensor) -> torch.Tensor:
            out = tail(encode(wire[idx]))
            loss = kd_loss(out, teacher_logits[idx], labels[idx], cfg.temperature, cfg.kd_weight)
            if rate is not None:  # encode() just ran the rate model on this batch
                loss = loss + cfg.rate_weight * rate.bits_per_frame / 8.0
            return loss

        n = len(wire)
        hist.losses.append(
            _train_epoch(n, cfg.batch_size, gen, loss_of, opt, sched, batch_progress)
        )
        hist.wall_s += time.perf_counter() - t0
        if head is not None:
            ckpt.save(_snapshot(parts, hist, cfg.stage2_epochs))
    tail.eval()
    for p in tail.parameters():
        p.requires_grad_(True)
    if head is not None:
        head.eval()
        for p in head.reduction.parameters():
            p.requires_grad_(True)
    return hist


# ---------------------------------------------------------------- measurements


@torch.no_grad()
def agreement_and_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor
) -> tuple[float, float]:
    """Top-1 agreement with the teacher and mean KL(teacher || student) in nats (T = 1)."""
    agree = float((student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean())
    kl = float(
        F.kl_div(
            F.log_softmax(student_logits, 1),
            F.log_softmax(teacher_logits, 1),
            log_target=True,
            reduction="batchmean",
        )
    )
    return agree, kl


@torch.no_grad()
def student_logits_from_feats(
    head: SplitHead, tail: SplitTail, compressor: nn.Module, feats: torch.Tensor, bs: int = 64
) -> torch.Tensor:
    head.eval()
    tail.eval()
    return torch.cat(
        [
            tail(compressor(head.reduction(feats[i : i + bs].float())))
            for i in range(0, len(feats), bs)
        ]
    )


@torch.no_grad()
def wire_bytes(
    head: SplitHead, x: torch.Tensor, codec: CodecConfig, tables: dict | None = None
) -> list[int]:
    """Payload sizes the device would send for the images ``x`` (the real wire codec)."""
    from wire.codecs import FeatureCodec
    from wire.quant import quantize_float_to_int8

    spec = head.spec  # type: ignore[attr-defined]
    qp = quant_params_for(spec.out_max, codec.bits)
    fc = FeatureCodec(tuple(spec.bottleneck_chw), qp, codec.name, dict(codec.params), tables=tables)
    head.eval()
    z = head(x).numpy()
    return [len(fc.encode_int8(quantize_float_to_int8(zi, qp), layout="CHW")) for zi in z]


@torch.no_grad()
def split_codes(head: SplitHead, feats: torch.Tensor, bits: int, bs: int = 64) -> np.ndarray:
    """The n-bit wire codes of cached split features (what a zstd dictionary is fit on)."""
    from wire.quant import quantize_float_to_int8, requantize_int8

    qp = quant_params_for(head.spec.out_max, bits)  # type: ignore[attr-defined]
    head.eval()
    z = torch.cat([head.reduction(feats[i : i + bs].float()) for i in range(0, len(feats), bs)])
    return requantize_int8(quantize_float_to_int8(z.numpy(), qp), qp)


def jpeg_bytes(img: Image.Image, size: tuple[int, int], quality: int = 85) -> int:
    """Bytes of a JPEG of the evaluation view (resize + centre crop) of ``img``."""
    import io

    from training.data.transforms import resize_center_crop

    buf = io.BytesIO()
    resize_center_crop(img.convert("RGB"), size).save(buf, format="JPEG", quality=quality)
    return buf.tell()


def make_compressor(
    head: SplitHead, codec: CodecConfig | None, rate_weight: float = 0.0
) -> CompressorLayer | RateBottleneck:
    """The wire codec in the loop, or (rate_weight > 0) the learned entropy model."""
    from training.compressor import wire_roundtrip

    if codec is None:
        return CompressorLayer(None)
    spec = head.spec  # type: ignore[attr-defined]
    if rate_weight > 0:
        return RateBottleneck(spec.bottleneck_chw[0], spec.out_max, codec.bits)
    return CompressorLayer(
        wire_roundtrip(spec.bottleneck_chw, spec.out_max, codec), codec.to_dict()
    )


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy with requires_grad off: the teacher is never touched by training."""
    t = copy.deepcopy(model).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def state_fingerprint(model: nn.Module) -> np.ndarray:
    """All parameters and buffers flattened (for 'teacher unchanged' checks)."""
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()]).numpy()


# ---------------------------------------------------------------- the end-to-end job


# foolbox's labelled ImageNet samples are evaluation only, never training inputs.
TRAIN_SOURCES = ("skimage", "sklearn")
# Held-out crops always come from the 11 colour photos, whatever the job trains on, so
# agreement numbers stay comparable across jobs with different training sources.
HELDOUT_SOURCES = ("skimage", "sklearn")


@dataclass(frozen=True)
class BottleFitJob:
    """One BottleFit run on an ImageNet backbone with shipped photos (CLI/benchmark input)."""

    model: str = "efficientnet_lite0"
    after: str = "stage3"
    channels: int = 8
    stride: int = 2
    codec: CodecConfig = field(default_factory=lambda: CodecConfig("jpeg", 8, {"quality": 60}))
    train_crops: int = 64  # per training photo
    mixed_crops: int = 0  # per training photo: mixup/CutMix blends of two photos' crops
    dead_leaves: int = 0  # procedural dead-leaves images (training.data.dead_leaves), in total
    sources: tuple[str, ...] = TRAIN_SOURCES  # shipped photo sets the crops come from
    heldout_crops: int = 8  # per training photo, another seed
    input_size: int = 224
    threads: int = 2
    progress: bool = True
    fit: BottleFitConfig = field(default_factory=BottleFitConfig)
    # folder of the ImageNet sample ("" = ../shared/data/imagenet-sample or the env var);
    # read only when ``sources`` names "imagenet-sample"
    imagenet_root: str = ""
    # git-ignored folder for the teacher cache and the per-epoch checkpoints ("" = none):
    # a rerun of the same job reuses the cache and continues at the next epoch
    run_dir: str = ""
    # cached split-point features in float16: early cuts have big maps (24x56x56 after
    # stage2); halves the memory, the MSE targets lose nothing that matters at 1-2-bit codes
    half_features: bool = False
    # read only when ``sources`` names "debian-corpus": augmented inputs per corpus photo,
    # and the corpus folder ("" = $SPLITFIT_PHOTOS or vendor/photos)
    corpus_crops: int = 1
    corpus_root: str = ""

    def __post_init__(self) -> None:
        for name in ("mixed_crops", "dead_leaves"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.corpus_crops < 1:
            raise ValueError(f"corpus_crops must be >= 1, got {self.corpus_crops}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec"] = self.codec.to_dict()
        return d

    def key(self, *, data_only: bool = False) -> str:
        """Hash of what determines the cached teacher outputs (``data_only``) or the run.

        Progress, threads and the run folder do not change results, so they stay out.
        """
        d = self.to_dict()
        d["fit"] = self.fit.to_dict()  # leaves out knobs at their "off" value (rate_weight 0)
        for k in ("progress", "threads", "run_dir"):
            d.pop(k)
        corpus: tuple[str, ...] = ("corpus_crops", "corpus_root")
        if "debian-corpus" not in self.sources:  # unread: keys of corpus-free runs unchanged
            for k in corpus:
                d.pop(k)
            corpus = ()
        if data_only:
            keep = ("model", "after", "train_crops", "mixed_crops", "dead_leaves", "sources")
            d = {k: d[k] for k in (*keep, "heldout_crops", "input_size", "imagenet_root",
                                   "half_features", *corpus)}  # fmt: skip
            d["seed"] = self.fit.seed
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _tqdm(enabled: bool, desc: str):
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, disable=not enabled, leave=False)


def _loader(ds, batch_size: int = 32):
    from torch.utils.data import DataLoader

    return DataLoader(ds, batch_size=batch_size, shuffle=False)


def evaluate_split(
    teacher: nn.Module,
    head: SplitHead,
    tail: SplitTail,
    compressor: nn.Module,
    heldout_feats: torch.Tensor,
    heldout_logits: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    teacher_eval_logits: torch.Tensor,
    heldout_labels: torch.Tensor | None = None,
) -> dict:
    """Agreement/KL on the held-out inputs, top-1 + agreement on the labelled samples.

    With ``heldout_labels`` (the held-out ImageNet photos) also the teacher's and the
    split's top-1, the split's top-5 and the top-1 loss in points, on those photos.
    """
    s = student_logits_from_feats(head, tail, compressor, heldout_feats)
    agree, kl = agreement_and_kl(s, heldout_logits)
    with torch.no_grad():
        head.eval()
        tail.eval()
        se = tail(compressor(head(eval_x)))
    agree_e, kl_e = agreement_and_kl(se, teacher_eval_logits)
    labelled: dict = {}
    if heldout_labels is not None and bool((heldout_labels >= 0).all()):
        labelled = heldout_metrics(s, heldout_logits, heldout_labels)
    return {
        **labelled,
        "heldout_top1_agreement": agree,
        "heldout_kl_nats": kl,
        "eval_top1": float((se.argmax(1) == eval_y).float().mean()),
        "eval_top1_agreement": agree_e,
        "eval_kl_nats": kl_e,
    }


def heldout_metrics(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> dict:
    """``training.evaluation.score_split`` (the protocol's one scorer) under the metric names
    BottleFit's metrics and the frontier results have always used."""
    from training.evaluation import score_split

    sc = score_split(student, teacher, labels)
    return {
        "heldout_teacher_top1": sc.teacher_top1,
        "heldout_top1": sc.split_top1,
        "heldout_top5": sc.split_top5,
        "heldout_top1_loss_pts": sc.top1_loss_points,
        "heldout_n": sc.n,
    }


def run_bottlefit(job: BottleFitJob, *, naive_baseline: bool = True) -> dict:
    """Train (both stages), evaluate and return everything; the caller exports/writes.

    Returns a dict with ``head``, ``tail``, ``teacher``, ``compressor`` and ``metrics``.
    """
    from torch.utils.data import ConcatDataset, Dataset

    from training.data.photos import LabeledImageNetSamples, shipped_photos
    from training.data.transforms import BoardView
    from training.models import create_model

    torch.set_num_threads(job.threads)
    torch.manual_seed(job.fit.seed)
    t_start = time.perf_counter()
    teacher = frozen_copy(create_model(job.model, pretrained=True))
    mean, std = tuple(teacher.mean), tuple(teacher.std)
    size = (job.input_size, job.input_size)

    if "foolbox" in job.sources:
        raise ValueError("foolbox's labelled samples are the evaluation set, not training data")

    def jitter(seed: int) -> CropJitter:
        return CropJitter(size, mean, std, seed=seed)

    from training.bottlefit_data import (
        DEBIAN_CORPUS_SOURCE,
        IMAGENET_SAMPLE_SOURCE,
        ListedPhotoCrops,
        corpus_crops,
        corpus_summary,
        imagenet_sample_photos_split,
        listed_mixed_crops,
        shipped_sources,
    )
    from training.data.folder import LabelledImages

    shipped = shipped_sources(job.sources)
    photos = shipped_photos(shipped) if shipped else []
    held_photos = None
    if IMAGENET_SAMPLE_SOURCE in job.sources:
        train_photos, held_photos = imagenet_sample_photos_split(job.imagenet_root or None)
        photos = [*train_photos, *photos]
    if not photos:
        raise ValueError(
            f"--sources {','.join(job.sources)}: name a photo set besides {DEBIAN_CORPUS_SOURCE} "
            "(imagenet-sample, skimage, sklearn, ...); the corpus is extra, unlabelled input"
        )
    plain_ds = ListedPhotoCrops(photos, jitter, job.train_crops, seed=job.fit.seed + 1)
    extras: list[Dataset] = []  # label-free inputs beyond plain crops, in a fixed order
    if job.mixed_crops > 0:
        extras.append(listed_mixed_crops(photos, jitter, job.mixed_crops, job.fit.seed + 2))
    if job.dead_leaves > 0:
        from training.data.dead_leaves import DeadLeaves

        extras.append(
            DeadLeaves(
                jitter, job.dead_leaves, seed=job.fit.seed + 3, sources=shipped or TRAIN_SOURCES
            )
        )
    corpus = None  # the Debian corpus: unlabelled rows, KD-only, after the other inputs
    if DEBIAN_CORPUS_SOURCE in job.sources:
        corpus = corpus_crops(jitter, job.corpus_crops, job.fit.seed + 4, job.corpus_root or None)
        extras.append(corpus)
    train_ds = ConcatDataset([plain_ds, *extras]) if extras else plain_ds
    if held_photos is not None:  # the fixed protocol: 200 held-out photos, board view
        held_ds: Dataset = LabelledImages(
            [(p.path, int(p.label)) for p in held_photos],  # type: ignore[arg-type]
            BoardView(size, mean, std),
            what="held-out ImageNet sample photo",
        )
    else:
        held = shipped_photos(HELDOUT_SOURCES)
        held_ds = ListedPhotoCrops(held, jitter, job.heldout_crops, seed=job.fit.seed + 1000)
    t0 = time.perf_counter()
    cache = StageCheckpoint(
        Path(job.run_dir) / f"teacher-{job.key(data_only=True)}.pt" if job.run_dir else None
    )
    cached = cache.load()
    if cached is None:
        feats, logits, labels = cache_teacher(
            teacher, job.after, _loader(train_ds), _tqdm(job.progress, "teacher: train crops")
        )
        if job.half_features:
            feats = feats.half()
        hfeats, hlogits, hlabels = cache_teacher(
            teacher, job.after, _loader(held_ds), _tqdm(job.progress, "teacher: held-out")
        )
        cache.save({"train": (feats, logits, labels), "heldout": (hfeats, hlogits, hlabels)})
    else:
        feats, logits, labels = cached["train"]
        hfeats, hlogits, hlabels = cached["heldout"]
    eval_ds = LabeledImageNetSamples(BoardView(size, mean, std))
    eval_x = torch.stack([eval_ds[i][0] for i in range(len(eval_ds))])
    eval_y = torch.tensor([eval_ds[i][1] for i in range(len(eval_ds))])
    with torch.no_grad():
        teacher_eval = teacher(eval_x)
    cache_s = time.perf_counter() - t0

    from training.bottleneck import split_model

    head, tail = split_model(
        teacher, job.after, job.channels, job.stride, input_size=size, model_name=job.model
    )
    for p in (*head.parameters(), *tail.parameters()):
        p.requires_grad_(True)
    compressor = make_compressor(head, job.codec, job.fit.rate_weight)
    ev = (hfeats, hlogits, eval_x, eval_y, teacher_eval, hlabels)
    metrics: dict = {"job": job.to_dict(), "spec": head.spec.to_dict()}  # type: ignore[attr-defined]
    metrics["teacher"] = {
        "eval_top1": float((teacher_eval.argmax(1) == eval_y).float().mean()),
        "n_eval": len(eval_y),
    }
    if naive_baseline:
        metrics["naive_insertion"] = evaluate_split(teacher, head, tail, compressor, *ev)

    def ckpt(stage: str) -> StageCheckpoint:
        return StageCheckpoint(
            Path(job.run_dir) / f"ckpt-{job.key()}-{stage}.pt" if job.run_dir else None
        )

    h1 = stage1_head_distillation(
        head,
        tail,
        compressor,
        feats,
        job.fit,
        _tqdm(job.progress, "stage 1 (head distillation)"),
        checkpoint=ckpt("stage1"),
        batch_progress=_tqdm(job.progress, "stage 1 batches"),
    )
    metrics["after_stage1"] = evaluate_split(teacher, head, tail, compressor, *ev)
    bottleneck_trains = job.fit.stage2_train in ("bottleneck", "all")
    wire = feats if bottleneck_trains else wire_tensors(head, compressor, feats)
    h2 = stage2_finetune(
        tail,
        wire,
        logits,
        labels,
        job.fit,
        _tqdm(job.progress, "stage 2 (KD fine-tune)"),
        head=head,
        compressor=compressor,
        checkpoint=ckpt("stage2"),
        batch_progress=_tqdm(job.progress, "stage 2 batches"),
    )
    metrics["bottlefit"] = evaluate_split(teacher, head, tail, compressor, *ev)

    tables = None
    if isinstance(compressor, RateBottleneck):  # the entropy tables the manifests carry
        tables = compressor.tables(split_codes(head, feats, job.codec.bits))
    payload = wire_bytes(head, eval_x, job.codec, tables)
    jpeg = [jpeg_bytes(Image.open(p.path), size, 85) for p in shipped_photos(("foolbox",))]
    metrics["bytes"] = {
        "wire_mean": float(np.mean(payload)),
        "wire_max": int(np.max(payload)),
        "jpeg_q85_mean": float(np.mean(jpeg)),
        "ratio_vs_jpeg_q85": float(np.mean(payload) / np.mean(jpeg)),
        "measured_on": "the 20 foolbox ImageNet samples, 224x224 centre crop",
    }
    metrics["history"] = {h.name: h.losses for h in (h1, h2)}
    metrics["timing_s"] = {
        "teacher_cache": cache_s,
        "stage1": h1.wall_s,
        "stage2": h2.wall_s,
        "total": time.perf_counter() - t_start,
    }
    n_corpus = len(corpus) if corpus is not None else 0
    metrics["data"] = {
        "train_photos": len(plain_ds.photos),
        "train_crops": len(plain_ds),
        "mixed_crops": len(train_ds) - len(plain_ds) - job.dead_leaves - n_corpus,
        "dead_leaves": job.dead_leaves,
        "heldout_crops": len(held_ds),
        "heldout_kind": "imagenet-sample held-out photos, board view"
        if held_photos is not None
        else "crops of the shipped colour photos",
        "eval_samples": len(eval_y),
        "sources_train": list(job.sources),
        "sources_heldout": list(HELDOUT_SOURCES),
    }
    if corpus is not None:
        metrics["data"]["debian_corpus"] = corpus_summary(corpus)
    return {
        "head": head,
        "tail": tail,
        "teacher": teacher,
        "compressor": compressor,
        "tables": tables,
        "metrics": metrics,
        "feats": feats,
        "logits": logits,
        "labels": labels,
        # what the evaluation above ran on, for callers that score more methods on it
        "plain_crops": plain_ds,  # the first len(plain_ds) rows of feats/logits/labels
        "heldout_crops": held_ds,
        "heldout": (hfeats, hlogits),
        "heldout_labels": hlabels,
        "eval": (eval_x, eval_y, teacher_eval),
    }
