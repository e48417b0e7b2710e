"""BottleFit vs naive insertion vs from-scratch on a *labelled* dataset (Fashion-MNIST).

The ImageNet run (``training.bottlefit.run_bottlefit``) has no training labels and only 20
labelled test photos, so it can measure agreement with the teacher but not the accuracy
ordering the BottleFit paper claims. Here every method is scored on a real test set:

1. a **teacher** is trained unsplit with the training core (``training.trainer.fit``);
2. one bottleneck (split point, C', s, wire codec) is inserted into a copy of it, and
3. from that same starting point (same bottleneck init) three methods train for the same
   number of epochs on the same images:

   - **naive insertion** (BottleNet-style): the whole bottlenecked model fine-tuned end to
     end with cross-entropy, the wire codec in the loop (straight-through);
   - **from scratch**: the same bottlenecked architecture, random init, cross-entropy;
   - **BottleFit**: stage 1 head distillation (MSE to the frozen teacher's features
     ``distill_depth`` blocks after the split; reduction + restoration + those blocks
     train, so the bottlenecked section replaces a run of teacher layers) then stage 2
     (head frozen, restoration + tail trained with KD from the teacher + CE) —
     ``training.bottlefit``'s own stage functions, unchanged.

Test accuracy after every epoch is recorded for each method (the per-epoch evaluation time
is measured and subtracted, so ``train_s`` is training only), as are bytes/frame of the real
wire payload of each method's head.
"""

from __future__ import annotations

import copy
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from training.bottlefit import (
    BottleFitConfig,
    cache_teacher,
    frozen_copy,
    make_compressor,
    stage1_head_distillation,
    stage2_finetune,
    wire_bytes,
    wire_tensors,
)
from training.bottleneck import SplitHead, SplitNet, SplitTail, split_model
from training.compressor import CodecConfig
from training.data import build_dataset
from training.models import create_model
from training.pipeline import loaders
from training.trainer import FitConfig, evaluate, fit
from wire.logjson import get_logger

log = get_logger(__name__)

METHODS = ("naive_insertion", "scratch", "bottlefit")


def default_fit() -> BottleFitConfig:
    return BottleFitConfig(
        stage1_epochs=2,
        stage2_epochs=2,
        batch_size=128,
        stage1_lr=1e-2,
        stage2_lr=1e-3,
        temperature=2.0,
        kd_weight=0.5,
        stage2_train="tail",
        distill_depth=2,
    )


@dataclass(frozen=True)
class CompareJob:
    """One comparison: teacher recipe, the bottleneck, and the per-method schedule.

    Naive insertion and scratch train ``fit.stage1_epochs + fit.stage2_epochs`` epochs at
    ``lr`` (AdamW, cosine, the training core's ``fit``); BottleFit spends the same epoch
    count as stage 1 + stage 2 with its own learning rates.
    """

    data: str = "fashion-mnist"
    model: str = "resnet_small"
    after: str = "rb1"
    channels: int = 2
    stride: int = 2
    codec: CodecConfig = field(default_factory=lambda: CodecConfig("zstd", 2, {}))
    limit_train: int | None = 15000
    limit_test: int | None = None
    teacher_epochs: int = 5
    lr: float = 2e-3
    fit: BottleFitConfig = field(default_factory=default_fit)
    bytes_samples: int = 500
    threads: int = 1
    progress: bool = True
    fashion_root: str | None = None

    def __post_init__(self) -> None:
        if self.teacher_epochs < 1:
            raise ValueError(f"teacher_epochs must be >= 1, got {self.teacher_epochs}")
        if self.epochs < 1:
            raise ValueError("stage1_epochs + stage2_epochs must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def epochs(self) -> int:
        return self.fit.stage1_epochs + self.fit.stage2_epochs

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec"] = self.codec.to_dict()
        d["epochs_per_method"] = self.epochs
        return d


class TimedLoader:
    """Wraps an evaluation loader and adds up the wall time of every full pass over it.

    A pass runs from ``iter()`` to exhaustion, and the model's forward runs between the
    yields, so the sum is the evaluation time that training loops with per-epoch
    evaluation must subtract to report training time alone.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        t0 = time.perf_counter()
        yield from self.loader
        self.seconds += time.perf_counter() - t0


def _evaluating_progress(
    desc: str, enabled: bool, after_epoch: Callable[[], None]
) -> Callable[[Iterable], Iterable]:
    """A ``progress`` hook for the BottleFit stages: tqdm, plus a callback after each epoch
    (the stage loop resumes the generator only once an epoch's body has finished)."""
    from tqdm import tqdm

    def wrap(it: Iterable) -> Iterable:
        for epoch in tqdm(it, desc=desc, disable=not enabled, leave=False):
            yield epoch
            after_epoch()

    return wrap


def _trainable(head: SplitHead, tail: SplitTail) -> None:
    for p in (*head.parameters(), *tail.parameters()):
        p.requires_grad_(True)


def run_compare(
    job: CompareJob, *, methods: tuple[str, ...] = METHODS, teacher_state: dict | None = None
) -> dict:
    """Train the teacher and the methods; return the results section (``fashion_mnist``).

    ``teacher_state``: a state_dict of a teacher trained earlier with the same job (pilots
    comparing bottlenecks reuse one teacher); ``methods``: a subset of ``METHODS``.
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; valid: {', '.join(METHODS)}")
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, job.threads))
    seed = job.fit.seed
    torch.manual_seed(seed)
    bundle = build_dataset(
        job.data,
        limit_train=job.limit_train,
        limit_val=job.limit_test,
        fashion_root=job.fashion_root,
        seed=seed,
    )
    train_loader, test_plain = loaders(bundle, job.fit.batch_size, seed)
    test = TimedLoader(test_plain)
    n_classes = len(bundle.labels)

    def test_acc(model: nn.Module) -> float:
        return evaluate(model, test)[1]

    # bad split/codec settings fail now, not after minutes of teacher training; the forked
    # RNG keeps the probe's random init from shifting the teacher's (results stay as recorded)
    with torch.random.fork_rng():
        probe_head, _ = split_model(
            create_model(job.model, num_classes=n_classes),
            job.after,
            job.channels,
            job.stride,
            input_size=bundle.input_hw,
        )
    make_compressor(probe_head, job.codec)

    # 1. the teacher (unsplit, trained with the training core)
    t0 = time.perf_counter()
    teacher_net = create_model(job.model, num_classes=n_classes)
    if teacher_state is not None:
        teacher_net.load_state_dict(teacher_state)
    else:
        fit(
            teacher_net,
            train_loader,
            None,
            FitConfig(epochs=job.teacher_epochs, lr=job.lr, progress=job.progress),
        )
    teacher_train_s = time.perf_counter() - t0
    teacher = frozen_copy(teacher_net)
    teacher_acc = test_acc(teacher)
    log.info("teacher", test_top1=teacher_acc, train_s=teacher_train_s)

    # 2. one bottleneck inserted into the teacher: the common start of naive and BottleFit
    base_head, base_tail = split_model(
        teacher,
        job.after,
        job.channels,
        job.stride,
        input_size=bundle.input_hw,
        model_name=job.model,
    )
    _trainable(base_head, base_tail)
    comp = make_compressor(base_head, job.codec)
    untrained_acc = test_acc(SplitNet(base_head, base_tail, comp))
    x_bytes = torch.stack(
        [bundle.val[i][0] for i in range(min(job.bytes_samples, len(bundle.val)))]  # type: ignore[arg-type]
    )

    def summary(head: SplitHead, curve: list[float], losses: list[float], train_s: float) -> dict:
        sizes = wire_bytes(head, x_bytes, job.codec)
        return {
            "test_top1": curve[-1],
            "curve": curve,
            "train_loss": losses,
            "epochs": job.epochs,
            "train_s": train_s,
            "bytes_mean": float(np.mean(sizes)),
            "bytes_max": int(np.max(sizes)),
        }

    results: dict[str, dict] = {}
    if "naive_insertion" in methods:
        results["naive_insertion"] = _naive(
            job, base_head, base_tail, untrained_acc, train_loader, test, summary
        )
    if "scratch" in methods:
        results["scratch"] = _scratch(job, bundle, n_classes, train_loader, test, summary)
    if "bottlefit" in methods:
        results["bottlefit"] = _bottlefit(
            job, bundle, teacher, base_head, base_tail, untrained_acc, test, summary
        )

    return {
        "dataset": job.data,
        "model": job.model,
        "job": job.to_dict(),
        "data": {**bundle.describe(), "train_augment": "random horizontal flip"},
        "spec": base_head.spec.to_dict(),  # type: ignore[attr-defined]
        "codec": job.codec.to_dict(),
        "teacher": {
            "test_top1": teacher_acc,
            "epochs": job.teacher_epochs,
            "train_s": teacher_train_s,
            "reused": teacher_state is not None,
        },
        "untrained_insertion": {"test_top1": untrained_acc},
        "methods": {k: results[k] for k in METHODS if k in results},
        "bytes": {
            "image_raw": int(np.prod(bundle.input_hw)) * (1 if job.data == "fashion-mnist" else 3),
            "measured_on": f"the first {len(x_bytes)} test images",
        },
        "timing_s": {"total": time.perf_counter() - t_start},
        "host": {"machine": platform.machine(), "threads": torch.get_num_threads()},
    }


def _fit_cfg(job: CompareJob) -> FitConfig:
    return FitConfig(epochs=job.epochs, lr=job.lr, progress=job.progress)


def _fit_and_summarise(job, net, acc0, train_loader, test, summary) -> dict:
    test.seconds, t0 = 0.0, time.perf_counter()
    hist = fit(net, train_loader, test, _fit_cfg(job))
    train_s = time.perf_counter() - t0 - test.seconds
    out = summary(
        net.head, [acc0] + [r.val_acc for r in hist], [r.train_loss for r in hist], train_s
    )
    out["epochs_label"] = f"{job.epochs}"
    return out


def _naive(job, base_head, base_tail, untrained_acc, train_loader, test, summary) -> dict:
    """BottleNet-style: the bottlenecked teacher fine-tuned end to end with CE (codec in)."""
    head, tail = copy.deepcopy(base_head), copy.deepcopy(base_tail)
    net = SplitNet(head, tail, make_compressor(head, job.codec))
    out = _fit_and_summarise(job, net, untrained_acc, train_loader, test, summary)
    log.info("naive_insertion", test_top1=out["test_top1"], train_s=out["train_s"])
    return out


def _scratch(job, bundle, n_classes, train_loader, test, summary) -> dict:
    """The same bottlenecked architecture from random init, CE."""
    torch.manual_seed(job.fit.seed + 7)
    scratch = create_model(job.model, num_classes=n_classes)
    head, tail = split_model(
        scratch,
        job.after,
        job.channels,
        job.stride,
        input_size=bundle.input_hw,
        model_name=job.model,
    )
    net = SplitNet(head, tail, make_compressor(head, job.codec))
    acc0 = evaluate(net, test)[1]
    out = _fit_and_summarise(job, net, acc0, train_loader, test, summary)
    log.info("scratch", test_top1=out["test_top1"], train_s=out["train_s"])
    return out


def _bottlefit(job, bundle, teacher, base_head, base_tail, untrained_acc, test, summary) -> dict:
    """Stage 1 (head distillation) then stage 2 (KD + CE), training.bottlefit's functions."""
    head, tail = copy.deepcopy(base_head), copy.deepcopy(base_tail)
    bcomp = make_compressor(head, job.codec)
    net = SplitNet(head, tail, bcomp).eval()  # evaluate() restores this mode; stages set theirs
    t0 = time.perf_counter()
    cache_loader = DataLoader(bundle.train, batch_size=256, shuffle=False)
    feats, logits, labels = cache_teacher(teacher, job.after, cache_loader)
    cache_s = time.perf_counter() - t0
    curve = [untrained_acc]
    test.seconds = 0.0

    def record() -> None:
        curve.append(evaluate(net, test)[1])

    h1 = stage1_head_distillation(
        head,
        tail,
        bcomp,
        feats,
        job.fit,
        _evaluating_progress("stage 1 (head distillation)", job.progress, record),
    )
    stage1_eval_s, test.seconds = test.seconds, 0.0
    stage1_acc = curve[-1]
    t0 = time.perf_counter()
    wire = wire_tensors(head, bcomp, feats)
    wire_s = time.perf_counter() - t0
    h2 = stage2_finetune(
        tail,
        wire,
        logits,
        labels,
        job.fit,
        _evaluating_progress("stage 2 (KD fine-tune)", job.progress, record),
    )
    stage1_s = h1.wall_s - stage1_eval_s
    stage2_s = h2.wall_s - test.seconds + wire_s
    bf = summary(head, curve, [*h1.losses, *h2.losses], stage1_s + stage2_s)
    bf.update(
        {
            "epochs_label": f"{job.fit.stage1_epochs} + {job.fit.stage2_epochs}",
            "stage1_test_top1": stage1_acc,
            "stage1_loss": h1.losses,
            "stage2_loss": h2.losses,
            "stage1_s": stage1_s,
            "stage2_s": stage2_s,
            "teacher_cache_s": cache_s,
        }
    )
    log.info("bottlefit", test_top1=bf["test_top1"], train_s=bf["train_s"])
    return bf
