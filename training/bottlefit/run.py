"""One BottleFit run end to end: inputs, teacher outputs, both stages, scores, bytes.

Why apart: this is the orchestration the CLI and the benchmarks call; each step it runs
lives in its own module (``augment``, ``teacher``, ``stages``, ``evaluate``, ``payload``),
and what it hands back is a typed :class:`BottleFitResult`, not a dict of loose keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from training.bottlefit.augment import CropJitter
from training.bottlefit.checkpoint import StageCheckpoint
from training.bottlefit.evaluate import evaluate_split
from training.bottlefit.job import HELDOUT_SOURCES, TRAIN_SOURCES, BottleFitJob
from training.bottlefit.payload import jpeg_bytes, split_codes, wire_bytes
from training.bottlefit.stages import (
    make_compressor,
    stage1_head_distillation,
    stage2_finetune,
    wire_tensors,
)
from training.bottlefit.teacher import cache_teacher, frozen_copy
from training.bottleneck import SplitHead, SplitTail
from training.compressor import CompressorLayer
from training.entropy_model import RateBottleneck
from wire.entropy_tables import EntropyTables


@dataclass
class BottleFitInputs:
    """What a job trains on and is scored on, before the teacher has seen any of it."""

    train: Dataset  # the plain crops first, then the extras in a fixed order
    plain: Any  # bottlefit_data.ListedPhotoCrops: the first len(plain) rows of ``train``
    heldout: Dataset
    heldout_is_imagenet: bool  # the fixed protocol's 200 labelled photos, or shipped crops
    corpus: Any | None  # the Debian corpus rows (unlabelled, KD only), when read


@dataclass
class TeacherOutputs:
    """The teacher's features at the split and logits, for the training and held-out rows."""

    feats: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    heldout_feats: torch.Tensor
    heldout_logits: torch.Tensor
    heldout_labels: torch.Tensor


@dataclass
class BottleFitResult:
    """Everything a run produced; the caller exports and writes.

    ``metrics`` is the JSON the run writes (job, spec, scores per phase, bytes, history,
    timing, data). The tensors and datasets are what the evaluation ran on, for callers
    that score more methods on the same inputs.
    """

    head: SplitHead
    tail: SplitTail
    teacher: nn.Module
    compressor: CompressorLayer | RateBottleneck
    tables: dict[str, EntropyTables] | None  # the entropy tables the manifests carry
    metrics: dict[str, Any]
    feats: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor
    plain_crops: Any  # the first len(plain_crops) rows of feats/logits/labels
    heldout_crops: Dataset
    heldout: tuple[torch.Tensor, torch.Tensor]  # held-out features and teacher logits
    heldout_labels: torch.Tensor
    eval: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # labelled x, y, teacher logits


def _tqdm(enabled: bool, desc: str):
    from tqdm import tqdm

    return lambda it: tqdm(it, desc=desc, disable=not enabled, leave=False)


def _loader(ds, batch_size: int = 32):
    from torch.utils.data import DataLoader

    return DataLoader(ds, batch_size=batch_size, shuffle=False)


def build_inputs(job: BottleFitJob, mean: tuple, std: tuple) -> BottleFitInputs:
    """The training rows (plain crops + mixup/CutMix + dead leaves + corpus) and the
    held-out set the job names, from the photo sets in ``job.sources``."""
    from training.bottlefit_data import (
        DEBIAN_CORPUS_SOURCE,
        IMAGENET_SAMPLE_SOURCE,
        ListedPhotoCrops,
        corpus_crops,
        imagenet_sample_photos_split,
        listed_mixed_crops,
        shipped_sources,
    )
    from training.data.folder import LabelledImages
    from training.data.photos import shipped_photos
    from training.data.transforms import BoardView

    if "foolbox" in job.sources:
        raise ValueError("foolbox's labelled samples are the evaluation set, not training data")
    size = (job.input_size, job.input_size)

    def crop_jitter(seed: int) -> CropJitter:
        return CropJitter(size, mean, std, seed=seed)

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
    plain = ListedPhotoCrops(photos, crop_jitter, job.train_crops, seed=job.fit.seed + 1)
    extras: list[Dataset] = []  # label-free inputs beyond plain crops, in a fixed order
    if job.mixed_crops > 0:
        extras.append(listed_mixed_crops(photos, crop_jitter, job.mixed_crops, job.fit.seed + 2))
    if job.dead_leaves > 0:
        from training.data.dead_leaves import DeadLeaves

        extras.append(
            DeadLeaves(
                crop_jitter,
                job.dead_leaves,
                seed=job.fit.seed + 3,
                sources=shipped or TRAIN_SOURCES,
            )
        )
    corpus = None  # the Debian corpus: unlabelled rows, KD-only, after the other inputs
    if DEBIAN_CORPUS_SOURCE in job.sources:
        corpus = corpus_crops(
            crop_jitter, job.corpus_crops, job.fit.seed + 4, job.corpus_root or None
        )
        extras.append(corpus)
    train = ConcatDataset([plain, *extras]) if extras else plain
    if held_photos is not None:  # the fixed protocol: 200 held-out photos, board view
        held: Dataset = LabelledImages(
            [(p.path, int(p.label)) for p in held_photos],  # type: ignore[arg-type]
            BoardView(size, mean, std),
            what="held-out ImageNet sample photo",
        )
    else:
        held_shipped = shipped_photos(HELDOUT_SOURCES)
        held = ListedPhotoCrops(
            held_shipped, crop_jitter, job.heldout_crops, seed=job.fit.seed + 1000
        )
    return BottleFitInputs(train, plain, held, held_photos is not None, corpus)


def teacher_outputs(
    job: BottleFitJob, teacher: nn.Module, inputs: BottleFitInputs
) -> TeacherOutputs:
    """The teacher's outputs for the job's inputs, from the run folder's cache when a run
    with the same data settings wrote one (``job.key(data_only=True)``), else computed."""
    cache = StageCheckpoint(
        Path(job.run_dir) / f"teacher-{job.key(data_only=True)}.pt" if job.run_dir else None
    )
    cached = cache.load()
    if cached is None:
        feats, logits, labels = cache_teacher(
            teacher, job.after, _loader(inputs.train), _tqdm(job.progress, "teacher: train crops")
        )
        if job.half_features:
            feats = feats.half()
        hfeats, hlogits, hlabels = cache_teacher(
            teacher, job.after, _loader(inputs.heldout), _tqdm(job.progress, "teacher: held-out")
        )
        cache.save({"train": (feats, logits, labels), "heldout": (hfeats, hlogits, hlabels)})
    else:
        feats, logits, labels = cached["train"]
        hfeats, hlogits, hlabels = cached["heldout"]
    return TeacherOutputs(feats, logits, labels, hfeats, hlogits, hlabels)


def labelled_eval(teacher: nn.Module, size: tuple[int, int]):
    """foolbox's 20 labelled ImageNet samples in the board's view, and the teacher on them."""
    from training.data.photos import LabeledImageNetSamples
    from training.data.transforms import BoardView

    ds = LabeledImageNetSamples(BoardView(size, tuple(teacher.mean), tuple(teacher.std)))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    with torch.no_grad():
        return x, y, teacher(x)


def bytes_metrics(head: SplitHead, eval_x: torch.Tensor, job: BottleFitJob, tables) -> dict:
    """Wire payload bytes of the labelled samples next to a q85 JPEG of the same view."""
    from training.data.photos import shipped_photos

    size = (job.input_size, job.input_size)
    payload = wire_bytes(head, eval_x, job.codec, tables)
    jpeg = [jpeg_bytes(Image.open(p.path), size, 85) for p in shipped_photos(("foolbox",))]
    return {
        "wire_mean": float(np.mean(payload)),
        "wire_max": int(np.max(payload)),
        "jpeg_q85_mean": float(np.mean(jpeg)),
        "ratio_vs_jpeg_q85": float(np.mean(payload) / np.mean(jpeg)),
        "measured_on": "the 20 foolbox ImageNet samples, 224x224 centre crop",
    }


def data_metrics(job: BottleFitJob, inputs: BottleFitInputs, n_eval: int) -> dict:
    """What the run trained and was scored on, for metrics.json and the README."""
    from training.bottlefit_data import corpus_summary

    n_corpus = len(inputs.corpus) if inputs.corpus is not None else 0
    data = {
        "train_photos": len(inputs.plain.photos),
        "train_crops": len(inputs.plain),
        "mixed_crops": len(inputs.train) - len(inputs.plain) - job.dead_leaves - n_corpus,  # type: ignore[arg-type]
        "dead_leaves": job.dead_leaves,
        "heldout_crops": len(inputs.heldout),  # type: ignore[arg-type]
        "heldout_kind": "imagenet-sample held-out photos, board view"
        if inputs.heldout_is_imagenet
        else "crops of the shipped colour photos",
        "eval_samples": n_eval,
        "sources_train": list(job.sources),
        "sources_heldout": list(HELDOUT_SOURCES),
    }
    if inputs.corpus is not None:
        data["debian_corpus"] = corpus_summary(inputs.corpus)
    return data


def run_bottlefit(job: BottleFitJob, *, naive_baseline: bool = True) -> BottleFitResult:
    """Train (both stages), evaluate and return everything; the caller exports/writes."""
    from training.bottleneck import split_model
    from training.models import create_model

    torch.set_num_threads(job.threads)
    torch.manual_seed(job.fit.seed)
    t_start = time.perf_counter()
    teacher = frozen_copy(create_model(job.model, pretrained=True))
    size = (job.input_size, job.input_size)
    inputs = build_inputs(job, tuple(teacher.mean), tuple(teacher.std))
    t0 = time.perf_counter()
    out = teacher_outputs(job, teacher, inputs)
    eval_x, eval_y, teacher_eval = labelled_eval(teacher, size)
    cache_s = time.perf_counter() - t0

    head, tail = split_model(
        teacher, job.after, job.channels, job.stride, input_size=size, model_name=job.model
    )
    for p in (*head.parameters(), *tail.parameters()):
        p.requires_grad_(True)
    compressor = make_compressor(head, job.codec, job.fit.rate_weight)
    ev = (out.heldout_feats, out.heldout_logits, eval_x, eval_y, teacher_eval, out.heldout_labels)
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
        out.feats,
        job.fit,
        _tqdm(job.progress, "stage 1 (head distillation)"),
        checkpoint=ckpt("stage1"),
        batch_progress=_tqdm(job.progress, "stage 1 batches"),
    )
    metrics["after_stage1"] = evaluate_split(teacher, head, tail, compressor, *ev)
    bottleneck_trains = job.fit.stage2_train in ("bottleneck", "all")
    wire = out.feats if bottleneck_trains else wire_tensors(head, compressor, out.feats)
    h2 = stage2_finetune(
        tail,
        wire,
        out.logits,
        out.labels,
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
        tables = compressor.tables(split_codes(head, out.feats, job.codec.bits))
    metrics["bytes"] = bytes_metrics(head, eval_x, job, tables)
    metrics["history"] = {h.name: h.losses for h in (h1, h2)}
    metrics["timing_s"] = {
        "teacher_cache": cache_s,
        "stage1": h1.wall_s,
        "stage2": h2.wall_s,
        "total": time.perf_counter() - t_start,
    }
    metrics["data"] = data_metrics(job, inputs, len(eval_y))
    return BottleFitResult(
        head=head,
        tail=tail,
        teacher=teacher,
        compressor=compressor,
        tables=tables,
        metrics=metrics,
        feats=out.feats,
        logits=out.logits,
        labels=out.labels,
        plain_crops=inputs.plain,
        heldout_crops=inputs.heldout,
        heldout=(out.heldout_feats, out.heldout_logits),
        heldout_labels=out.heldout_labels,
        eval=(eval_x, eval_y, teacher_eval),
    )
