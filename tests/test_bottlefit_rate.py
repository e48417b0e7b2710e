"""BottleFit with a rate term: resumable stage 2 keeps the entropy model, run keys keep rate
runs and plain runs apart, and the prior starts fitted to the features it prices.

A rate-trained run's exported rANS tables come from the prior that stage 2 trains; a killed
run that resumes without it would export tables of a fresh, untrained prior.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.interrupt import Killed, killed_after

torch = pytest.importorskip("torch")

from training.bottlefit import (  # noqa: E402
    BottleFitConfig,
    BottleFitJob,
    StageCheckpoint,
    make_compressor,
    stage2_finetune,
)
from training.compressor import CodecConfig  # noqa: E402
from training.entropy_model import RateBottleneck  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _data():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(48, 3, 32, 32, generator=g)
    teacher = torch.randn(48, 3, generator=torch.Generator().manual_seed(6))
    return x, teacher, torch.full((48,), -1)


def _fresh(rate_weight: float, codec: str = "rans"):
    """A new process's view: same seed, fresh modules (what a restarted run rebuilds)."""
    from training.bottleneck import split_model
    from training.models import create_model

    torch.manual_seed(4)
    model = create_model("resnet_small", num_classes=3)
    head, tail = split_model(model, "rb1", 2, 2, input_size=(32, 32))
    for p in (*head.parameters(), *tail.parameters()):
        p.requires_grad_(True)
    comp = make_compressor(head, CodecConfig(codec, 2, {}), rate_weight)
    x, teacher, labels = _data()
    with torch.no_grad():
        feats = head.body.eval()(x)
    return head, tail, comp, feats, teacher, labels


def _cfg(rate_weight: float = 0.05) -> BottleFitConfig:
    return BottleFitConfig(
        stage1_epochs=0,
        stage2_epochs=4,
        stage2_lr=1e-2,
        stage2_train="bottleneck",
        rate_weight=rate_weight,
        batch_size=16,
    )


def _run(rate_weight: float, ckpt: StageCheckpoint | None, progress=lambda it: it):
    head, tail, comp, feats, teacher, labels = _fresh(rate_weight)
    hist = stage2_finetune(
        tail,
        feats,
        teacher,
        labels,
        _cfg(rate_weight),
        progress,
        head=head,
        compressor=comp,
        checkpoint=ckpt,
    )
    return hist, comp


def test_killed_rate_run_resumes_with_its_entropy_model_bit_for_bit(tmp_path: Path) -> None:
    whole, comp = _run(0.05, None)
    assert isinstance(comp, RateBottleneck) and len(whole.losses) == 4

    ckpt = StageCheckpoint(tmp_path / "stage2.pt")
    with pytest.raises(Killed):
        _run(0.05, ckpt, killed_after(2))
    saved = torch.load(ckpt.path, weights_only=False)
    assert saved["epoch"] == 2 and "prior" in saved

    resumed, comp2 = _run(0.05, ckpt)  # fresh modules, the checkpoint on disk
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-5)
    for a, b in zip(
        comp.prior.state_dict().values(), comp2.prior.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    # the exported tables come from that prior: identical, not a fresh prior's
    assert (comp.pmf() == comp2.pmf()).all()


def test_finished_rate_stage_reloaded_gives_the_trained_prior(tmp_path: Path) -> None:
    """A rerun of a finished job trains nothing and exports: the prior must be the trained one."""
    ckpt = StageCheckpoint(tmp_path / "stage2.pt")
    _, trained = _run(0.05, ckpt)
    _, reloaded = _run(0.05, ckpt)
    untrained = _fresh(0.05)[2]
    assert (trained.pmf() == reloaded.pmf()).all()
    assert not (untrained.pmf() == reloaded.pmf()).all()


def test_rate_run_refuses_a_checkpoint_without_the_prior(tmp_path: Path) -> None:
    """A stage-2 checkpoint written without the entropy model (an older version, or a plain
    run's file put under a rate run's name) is refused with what to do, not half-loaded."""
    ckpt = StageCheckpoint(tmp_path / "stage2.pt")
    with pytest.raises(Killed):
        _run(0.05, ckpt, killed_after(1))
    state = torch.load(ckpt.path, weights_only=False)
    del state["prior"]
    torch.save(state, ckpt.path)
    with pytest.raises(ValueError, match=r"lacks prior.*delete the checkpoint"):
        _run(0.05, ckpt)


def test_run_key_separates_rate_runs_from_plain_runs_and_each_weight() -> None:
    """Checkpoints are named by the run key: a rate run must never resume a plain run's
    stage-2 checkpoint (or one of another weight), but both share the teacher cache."""
    plain = BottleFitJob(fit=BottleFitConfig(stage2_train="all"))
    rate = BottleFitJob(fit=BottleFitConfig(stage2_train="all", rate_weight=1e-3))
    rate2 = BottleFitJob(fit=BottleFitConfig(stage2_train="all", rate_weight=3e-3))
    assert len({plain.key(), rate.key(), rate2.key()}) == 3
    assert plain.key(data_only=True) == rate.key(data_only=True) == rate2.key(data_only=True)


def test_prior_fit_makes_the_first_rate_estimate_match_the_codes() -> None:
    """Fitted to the features it prices, the prior's estimate is near the codes' empirical
    entropy (a fresh prior spreads over the code range and overstates it several times)."""
    head, _, comp, feats, _, _ = _fresh(0.05)
    with torch.no_grad():
        z = head.reduction.eval()(feats)
    codes = torch.round(z / comp.step).clamp(0, comp.levels)
    counts = torch.stack([(codes[:, c] == v).sum() for c in range(2) for v in range(4)]).reshape(
        2, 4
    )
    p = counts.double() / counts.sum(1, keepdim=True)
    entropy = float(-(p * torch.log2(p.clamp_min(1e-12))).sum() * z[0, 0].numel())
    comp.eval()
    with torch.no_grad():
        comp(z)
    before = float(comp.bits_per_frame)
    after = comp.fit_prior(z, steps=300, seed=0)
    assert after < 1.15 * entropy + 2, (after, entropy)
    assert before > 1.5 * after, (before, after)


def _parse(argv: list[str]):
    import argparse

    from training.commands.bottlefit import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_cli_rate_weight_reaches_the_imagenet_run_and_is_refused_for_the_comparison(
    tmp_path: Path,
) -> None:
    """``--rate-weight`` on the default (ImageNet) run must start that run: it used to be
    refused as if ``--dataset`` had been given, because the default dataset name is truthy.
    Here the run gets as far as reading the (missing) sample folder."""
    from training.commands.bottlefit import run

    flags = ["--rate-weight", "0.001", "--stage2-train", "all", "--no-progress"]
    args = _parse([*flags, "--sources", "imagenet-sample", "--out", str(tmp_path / "out"),
                   "--imagenet-root", str(tmp_path / "no-such-folder")])  # fmt: skip
    with pytest.raises((FileNotFoundError, ValueError)) as err:
        run(args)
    assert "no-such-folder" in str(err.value) and "--rate-weight" not in str(err.value)
    args = _parse([*flags, "--dataset", "fashion-mnist", "--out", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="--rate-weight trains the ImageNet BottleFit run"):
        run(args)
