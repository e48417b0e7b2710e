"""The frozen teacher: its prefix up to the split and its cached outputs.

Why: the head's backbone prefix stays the teacher's (frozen), so the features at the split
and the teacher's logits are computed once per input and cached; that cache, not a shortcut
in the recipe, is what fits BottleFit into a CPU budget.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from training.bottleneck import _resolve_after


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


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy with requires_grad off: the teacher is never touched by training."""
    t = copy.deepcopy(model).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def state_fingerprint(model: nn.Module) -> np.ndarray:
    """All parameters and buffers flattened (for 'teacher unchanged' checks)."""
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()]).numpy()
