"""BottleFit's two training stages (seeds 000/001) and what they train.

Stage 1, head distillation: only the bottleneck's reduction unit (head side) and
restoration unit (tail side) train, so that ``restoration(codec(reduction(f)))``
reproduces the frozen teacher's feature ``f`` at the split point (MSE), on cached features.

Stage 2, fine-tuning with knowledge distillation from the teacher's logits (temperature
``T``, weight ``kd_weight``) plus cross-entropy where labels exist; ``stage2_train`` says
what trains (tail, restoration, bottleneck, or all). With a rate weight the learned
entropy model is the compressor and the loss gains λ·bytes/frame. The tail's BatchNorm
statistics stay frozen (eval mode): a few hundred photos must not overwrite ImageNet's.

The wire codec (``training.compressor``, straight-through) sits in the loop in both stages.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from training.bottlefit.checkpoint import StageCheckpoint, restore, snapshot, stage_parts
from training.bottlefit.config import BottleFitConfig, StageHistory
from training.bottleneck import SplitHead, SplitTail
from training.compressor import CodecConfig, CompressorLayer
from training.entropy_model import RateBottleneck


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
    parts = stage_parts(head, tail, opt, sched, gen)
    done = restore(ckpt.load(), parts, hist, cfg.stage1_epochs)
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
        ckpt.save(snapshot(parts, hist, cfg.stage1_epochs))
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
    parts = stage_parts(head, tail, opt, sched, gen, rate) if head is not None else {}
    done = restore(ckpt.load(), parts, hist, cfg.stage2_epochs) if head is not None else 0
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
            ckpt.save(snapshot(parts, hist, cfg.stage2_epochs))
    tail.eval()
    for p in tail.parameters():
        p.requires_grad_(True)
    if head is not None:
        head.eval()
        for p in head.reduction.parameters():
            p.requires_grad_(True)
    return hist


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
