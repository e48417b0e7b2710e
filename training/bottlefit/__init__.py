"""BottleFit's two-stage training of a bottlenecked split model (seeds 000/001).

Stage 1, head distillation: the student is ``split_model(teacher copy)``. Only the
bottleneck's reduction unit (head side) and restoration unit (tail side) train, so that
``restoration(codec(reduction(f)))`` reproduces the frozen teacher's feature ``f`` at the
split point (MSE). No labels are needed, which is what makes ImageNet models trainable
here from augmented crops of a few hundred photos. The head's backbone prefix stays the
teacher's (frozen): its output *is* the teacher feature, so features are computed once and
cached.

Stage 2, fine-tuning: the restoration + tail (and, with ``stage2_train`` "bottleneck" /
"all", the reduction) train with knowledge distillation from the teacher's logits plus
cross-entropy where labels exist; with ``rate_weight`` > 0 the learned entropy model is the
compressor and the loss gains λ·bytes/frame.

One job per module:

- ``config``: the stages' knobs (:class:`BottleFitConfig`) and loss history;
- ``job``: one run's description (:class:`BottleFitJob`) and its cache/checkpoint keys;
- ``augment``: crop/flip/colour-jitter of the training photos;
- ``teacher``: the frozen teacher's prefix and its cached outputs;
- ``checkpoint``: per-epoch resumable stage checkpoints;
- ``stages``: stage 1, stage 2, their losses and what trains;
- ``evaluate``: agreement, KL and the held-out protocol's scores;
- ``payload``: real wire bytes of a split, and a JPEG's for comparison;
- ``run``: the orchestration, returning a typed :class:`BottleFitResult`.

The names below were all importable from the single ``training.bottlefit`` module this
package replaced; they stay importable from here.
"""

from __future__ import annotations

from training.bottlefit.augment import CropJitter
from training.bottlefit.checkpoint import StageCheckpoint
from training.bottlefit.config import STAGE2_TRAINABLE, BottleFitConfig, StageHistory
from training.bottlefit.evaluate import (
    agreement_and_kl,
    evaluate_split,
    heldout_metrics,
    student_logits_from_feats,
)
from training.bottlefit.job import HELDOUT_SOURCES, TRAIN_SOURCES, BottleFitJob
from training.bottlefit.payload import jpeg_bytes, split_codes, wire_bytes
from training.bottlefit.run import BottleFitResult, run_bottlefit
from training.bottlefit.stages import (
    deeper_targets,
    jitter,
    kd_loss,
    make_compressor,
    match_output_statistics,
    stage1_head_distillation,
    stage1_parameters,
    stage2_finetune,
    stage2_parameters,
    wire_tensors,
)
from training.bottlefit.teacher import (
    cache_teacher,
    frozen_copy,
    state_fingerprint,
    teacher_prefix,
)

__all__ = [
    "HELDOUT_SOURCES",
    "STAGE2_TRAINABLE",
    "TRAIN_SOURCES",
    "BottleFitConfig",
    "BottleFitJob",
    "BottleFitResult",
    "CropJitter",
    "StageCheckpoint",
    "StageHistory",
    "agreement_and_kl",
    "cache_teacher",
    "deeper_targets",
    "evaluate_split",
    "frozen_copy",
    "heldout_metrics",
    "jitter",
    "jpeg_bytes",
    "kd_loss",
    "make_compressor",
    "match_output_statistics",
    "run_bottlefit",
    "split_codes",
    "stage1_head_distillation",
    "stage1_parameters",
    "stage2_finetune",
    "stage2_parameters",
    "state_fingerprint",
    "student_logits_from_feats",
    "teacher_prefix",
    "wire_bytes",
    "wire_tensors",
]
