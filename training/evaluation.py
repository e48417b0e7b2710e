"""Scoring ImageNet models and split models on real labelled photos.

* ``imagenet_samples_top1``: top-1 on foolbox's 20 labelled photos, classic 256->224 crop.
  20 images is a smoke-level check, not an ImageNet benchmark: it tells a working
  pretrained model (~17-18/20 for EfficientNet-Lite0) from a broken one (~0/20), e.g.
  wrong padding or normalisation.
* ``evaluate_split`` / ``score_split``: the fixed evaluation protocol of a split model
  against its teacher (docs/data.md), on the 200 held-out ImageNet-sample photos and the
  20 foolbox photos, on the board's view.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from training.data.photos import LabeledImageNetSamples, shipped_photos
from training.data.transforms import BoardView, ImageTransform


@torch.no_grad()
def imagenet_samples_top1(
    forward: Callable[[torch.Tensor], torch.Tensor],
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    size: int = 224,
) -> tuple[int, int]:
    """(correct, total) for ``forward`` (a model or head∘codec∘tail) on the foolbox samples."""
    ds = LabeledImageNetSamples(ImageTransform((size, size), mean, std, train=False))
    correct = total = 0
    for x, y in DataLoader(ds, batch_size=10):
        correct += int((forward(x).argmax(1) == y).sum())
        total += len(y)
    return correct, total


# ---------------------------------------------------------------- the split evaluation protocol
#
# docs/data.md, "Evaluation protocol": a split model is judged against its teacher on the
# 200 held-out ImageNet-sample photos (training.data.imagenet_sample, never trained on) and
# on foolbox's 20 labelled photos, both on the board's own view (hardware.preprocess via
# BoardView): teacher top-1, split top-1 and top-5, top-1 agreement with the teacher and
# KL(teacher || split). Training jobs that hold cached logits call ``score_split``; anything
# holding two callables calls ``evaluate_split``.


@dataclass(frozen=True)
class SplitScores:
    """Split vs teacher on one labelled photo set (fractions in [0, 1], KL in nats at T = 1)."""

    n: int
    teacher_top1: float
    split_top1: float
    split_top5: float
    top1_agreement: float
    kl_teacher_split: float

    @property
    def top1_loss_points(self) -> float:
        """Teacher top-1 minus split top-1, in percentage points (the issue's target: <= 2)."""
        return 100.0 * (self.teacher_top1 - self.split_top1)

    def to_dict(self) -> dict:
        return {**asdict(self), "top1_loss_points": self.top1_loss_points}


@dataclass(frozen=True)
class SplitEvaluation:
    """The protocol's two photo sets; ``heldout`` is None only when its folder was absent."""

    heldout: SplitScores | None
    foolbox: SplitScores
    view: str = "board (hardware.preprocess: shorter side to the input size, centre crop)"
    heldout_missing: str = ""  # why ``heldout`` is None

    def to_dict(self) -> dict:
        return {
            "heldout_imagenet_sample": None if self.heldout is None else self.heldout.to_dict(),
            "foolbox_20": self.foolbox.to_dict(),
            "view": self.view,
            "heldout_missing": self.heldout_missing,
        }


@torch.no_grad()
def score_split(
    split_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor
) -> SplitScores:
    """The protocol's figures from the logits both models gave the same labelled photos."""
    if not (len(split_logits) == len(teacher_logits) == len(labels)) or len(labels) == 0:
        raise ValueError(
            f"need the same non-zero number of rows: split {len(split_logits)}, "
            f"teacher {len(teacher_logits)}, labels {len(labels)}"
        )
    split_logits, teacher_logits = split_logits.float(), teacher_logits.float()
    labels = torch.as_tensor(labels)
    k = min(5, split_logits.shape[1])
    top5 = split_logits.topk(k, dim=1).indices
    kl = F.kl_div(
        F.log_softmax(split_logits, 1),
        F.log_softmax(teacher_logits, 1),
        log_target=True,
        reduction="batchmean",
    )
    return SplitScores(
        n=len(labels),
        teacher_top1=float((teacher_logits.argmax(1) == labels).float().mean()),
        split_top1=float((split_logits.argmax(1) == labels).float().mean()),
        split_top5=float((top5 == labels[:, None]).any(1).float().mean()),
        top1_agreement=float((split_logits.argmax(1) == teacher_logits.argmax(1)).float().mean()),
        kl_teacher_split=float(kl),
    )


@dataclass
class EvalSet:
    """A labelled photo set on the board's view, decoded once; teacher logits cached."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    teacher_logits: torch.Tensor | None = None


def board_view_set(
    name: str,
    samples: list[tuple[Path, int]],
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> EvalSet:
    """(path, label) samples -> one EvalSet on the board's view."""
    view = BoardView((size, size), mean, std)
    xs = []
    for path, _ in samples:
        with Image.open(path) as img:
            xs.append(view(img.convert("RGB")))
    return EvalSet(name, torch.stack(xs), torch.tensor([y for _, y in samples]))


def protocol_sets(
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    size: int = 224,
    imagenet_root: str | os.PathLike | None = None,
    *,
    require_heldout: bool = True,
) -> tuple[EvalSet | None, EvalSet, str]:
    """(held-out 200, foolbox 20, why held-out is missing) on the board's view.

    Build these once and pass them to ``evaluate_split`` for every model scored in a run:
    decoding and the teacher's forward pass are then paid once.
    """
    from training.data.imagenet_sample import ImageNetSampleMissing, imagenet_sample_split

    heldout, missing = None, ""
    try:
        _, held = imagenet_sample_split(imagenet_root)
        heldout = board_view_set("heldout_imagenet_sample", held, size, mean, std)
    except ImageNetSampleMissing as exc:
        if require_heldout:
            raise
        missing = str(exc)
    fool = [(p.path, int(p.label)) for p in shipped_photos(("foolbox",)) if p.label is not None]
    if not fool:
        raise FileNotFoundError("foolbox's ImageNet samples not found (pip install foolbox)")
    return heldout, board_view_set("foolbox_20", fool, size, mean, std), missing


@torch.no_grad()
def _logits(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, bs: int
) -> torch.Tensor:
    if isinstance(model, torch.nn.Module):
        model.eval()
    return torch.cat([model(x[i : i + bs]) for i in range(0, len(x), bs)])


def evaluate_split(
    split_model: Callable[[torch.Tensor], torch.Tensor],
    teacher: Callable[[torch.Tensor], torch.Tensor],
    *,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    size: int = 224,
    imagenet_root: str | os.PathLike | None = None,
    sets: tuple[EvalSet | None, EvalSet, str] | None = None,
    require_heldout: bool = True,
    batch_size: int = 25,
) -> SplitEvaluation:
    """The evaluation protocol for ``split_model`` (images -> logits, e.g. head∘codec∘tail).

    ``mean``/``std`` default to the teacher's own attributes (``training.models`` sets them).
    ``sets`` from ``protocol_sets`` reuses decoded photos and the teacher's logits across
    calls. Without the ImageNet sample folder this raises ``ImageNetSampleMissing``, or,
    with ``require_heldout=False``, returns ``heldout=None`` and says why.
    """
    if sets is None:
        mean = mean if mean is not None else tuple(teacher.mean)  # type: ignore[attr-defined]
        std = std if std is not None else tuple(teacher.std)  # type: ignore[attr-defined]
        sets = protocol_sets(mean, std, size, imagenet_root, require_heldout=require_heldout)
    heldout, fool, missing = sets

    def score(s: EvalSet) -> SplitScores:
        if s.teacher_logits is None:
            s.teacher_logits = _logits(teacher, s.x, batch_size)
        return score_split(_logits(split_model, s.x, batch_size), s.teacher_logits, s.y)

    return SplitEvaluation(
        None if heldout is None else score(heldout), score(fool), heldout_missing=missing
    )
