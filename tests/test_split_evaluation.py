"""The split evaluation protocol: figures from logits, and the whole run on board-view photos."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from training.data.imagenet_sample import ImageNetSampleMissing, imagenet_sample_root  # noqa: E402
from training.evaluation import evaluate_split, protocol_sets, score_split  # noqa: E402

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_score_split_figures_by_hand() -> None:
    teacher = torch.full((4, 6), 0.0)
    for row, cls in enumerate([0, 1, 2, 3]):
        teacher[row, cls] = 5.0
    split = torch.tensor(
        [
            [9.0, 1, 1, 1, 1, 1],  # top-1 0 (right, agrees)
            [1.0, 5, 9, 1, 1, 1],  # top-1 2 (wrong, disagrees), label 1 in its top-5
            [1.0, 1, 9, 1, 1, 1],  # top-1 2 (right, agrees)
            [4.0, 3, 2, 1, 9, -9],  # top-1 4; label 5 ranks last: not in top-5
        ]
    )
    labels = torch.tensor([0, 1, 2, 5])
    s = score_split(split, teacher, labels)
    assert (s.n, s.teacher_top1, s.split_top1, s.split_top5) == (4, 0.75, 0.5, 0.75)
    assert s.top1_agreement == 0.5 and s.top1_loss_points == 25.0
    pt, ps = teacher.softmax(1), split.softmax(1)
    kl = float((pt * (pt.log() - ps.log())).sum(1).mean())
    assert math.isclose(s.kl_teacher_split, kl, rel_tol=1e-5)
    same = score_split(teacher, teacher, labels)
    assert same.top1_agreement == 1.0 and abs(same.kl_teacher_split) < 1e-6
    with pytest.raises(ValueError, match="same non-zero number of rows"):
        score_split(split[:3], teacher, labels)


class Tiny(nn.Module):
    """A real (small) classifier over 1000 classes: pooled colour -> linear."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(3, 1000)
        self.mean, self.std = MEAN, STD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def fake_sample(tmp: Path) -> Path:
    synsets = [f"n{10_000_000 + i:08d}" for i in range(1000)]
    (tmp / "synsets.txt").write_text("\n".join(synsets) + "\n")
    rng = np.random.default_rng(0)
    for i in range(14):
        px = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(px).save(tmp / f"{synsets[i * 50]}_x.JPEG", format="JPEG")
    return tmp


def test_evaluate_split_on_the_board_view(tmp_path: Path) -> None:
    root = fake_sample(tmp_path)
    teacher = Tiny(0)
    calls = {"teacher": 0}

    def counted(x: torch.Tensor) -> torch.Tensor:
        calls["teacher"] += 1
        return teacher(x)

    sets = protocol_sets(MEAN, STD, size=32, imagenet_root=root)
    assert sets[0] is not None and tuple(sets[0].x.shape) == (4, 3, 32, 32)  # 4 of 14 held out
    assert tuple(sets[1].x.shape) == (20, 3, 32, 32)  # foolbox's 20
    ev = evaluate_split(teacher, counted, sets=sets)
    assert ev.heldout is not None and ev.heldout.n == 4 and ev.foolbox.n == 20
    assert ev.heldout.top1_agreement == 1.0 and ev.foolbox.top1_agreement == 1.0
    assert abs(ev.heldout.kl_teacher_split) < 1e-6
    first = calls["teacher"]
    other = Tiny(1)
    ev2 = evaluate_split(other, counted, sets=sets)
    assert calls["teacher"] == first  # teacher logits reused from the sets
    assert ev2.foolbox.top1_agreement < 1.0 and ev2.foolbox.kl_teacher_split > 0
    d = ev2.to_dict()
    assert d["heldout_imagenet_sample"]["n"] == 4 and "top1_loss_points" in d["foolbox_20"]


def test_missing_heldout_folder_raises_or_is_reported(tmp_path: Path) -> None:
    teacher = Tiny(0)
    with pytest.raises(ImageNetSampleMissing):
        evaluate_split(teacher, teacher, size=32, imagenet_root=tmp_path / "absent")
    ev = evaluate_split(
        teacher, teacher, size=32, imagenet_root=tmp_path / "absent", require_heldout=False
    )
    assert ev.heldout is None and "absent" in ev.heldout_missing and ev.foolbox.n == 20


REAL = imagenet_sample_root()


@pytest.mark.slow
@pytest.mark.skipif(
    not (REAL / "synsets.txt").is_file(),
    reason=f"ImageNet sample folder {REAL} absent (set $SPLITFIT_IMAGENET_SAMPLE to run)",
)
def test_real_teacher_on_the_200_heldout_photos() -> None:
    from training.models import create_model

    torch.set_num_threads(2)
    teacher = create_model("efficientnet_lite0", pretrained=True).eval()
    ev = evaluate_split(teacher, teacher)
    assert ev.heldout is not None and ev.heldout.n == 200
    # issue #19 measured 87.7 % for the teacher on this view; a broken view or labels ~0 %
    assert 0.80 <= ev.heldout.teacher_top1 <= 0.95
    assert ev.heldout.top1_agreement == 1.0 and ev.foolbox.teacher_top1 >= 0.8
