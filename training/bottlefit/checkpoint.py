"""Per-epoch, atomic, resumable checkpoints of one training stage.

Why: a stage runs for minutes to hours on a shared CPU and may be killed; what it saves and
what it restores are listed once (``stage_parts``), so the two can never disagree.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from training.bottlefit.config import StageHistory
from training.bottleneck import SplitHead, SplitTail
from training.entropy_model import RateBottleneck


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


def stage_parts(
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


def snapshot(parts: dict, hist: StageHistory, epochs: int) -> dict:
    return {
        "epoch": len(hist.losses),
        "epochs": epochs,
        **{key: read() for key, (read, _) in parts.items()},
        "losses": list(hist.losses),
        "wall_s": hist.wall_s,
    }


def restore(state: dict | None, parts: dict, hist: StageHistory, epochs: int) -> int:
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
