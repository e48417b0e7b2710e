"""Scores of a split against its teacher: agreement, KL, and the held-out protocol's top-1/5.

Why apart: the same scores are read by the CLI's README, the comparison benchmark and the
frontier; the held-out numbers come from ``training.evaluation.score_split``, the
protocol's one scorer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.bottleneck import SplitHead, SplitTail


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
