"""The training loop: epochs with tqdm, evaluation, atomic checkpoints, resume.

Kept independent of *what* is trained (a SplitNet with or without the compressor, an
unsplit backbone) so BottleFit/BottleNet++/search reuse it with their own loss functions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from wire.atomicfile import write_atomic
from wire.logjson import get_logger

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float


@dataclass
class FitConfig:
    epochs: int = 3
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # or "sgd"
    label_smoothing: float = 0.0
    max_steps_per_epoch: int | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)


log = get_logger(__name__)


def atomic_torch_save(obj, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    def fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        logits = model(x)
        return nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing), logits

    return fn


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, *, device: str = "cpu", progress: bool = False
) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) over the loader, model in eval mode."""
    was = model.training
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    model.train(was)
    if total == 0:
        raise ValueError("evaluation set is empty")
    return loss_sum / total, correct / total


def _optimizer(params, cfg: FitConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adamw, sgd)")


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    cfg: FitConfig,
    *,
    checkpoint: Path | None = None,
    resume: bool = False,
    loss_fn: LossFn | None = None,
    params=None,
    device: str = "cpu",
    identity: dict | None = None,
) -> list[EpochRecord]:
    """Train with a cosine learning-rate schedule; checkpoint after every epoch.

    ``identity`` (model/split/codec description) is stored in the checkpoint, and resuming
    from a checkpoint with a different identity is refused rather than silently mixing runs.
    """
    loss_fn = loss_fn or cross_entropy_loss(cfg.label_smoothing)
    model.to(device)
    opt = _optimizer(params if params is not None else model.parameters(), cfg)
    steps_per_epoch = len(train_loader)
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total = max(1, cfg.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    history: list[EpochRecord] = []
    start_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if identity is not None and state.get("identity") != identity:
            raise ValueError(
                f"checkpoint {checkpoint} belongs to a different run "
                f"({state.get('identity')} != {identity}); use another --out or drop --resume"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = [EpochRecord(**r) for r in state["history"]]
        start_epoch = int(state["epoch"])
        log.info("resume", checkpoint=str(checkpoint), epoch=start_epoch)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        seen, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not cfg.progress,
            leave=False,
        )
        for step, (x, y) in enumerate(train_loader):
            if step >= steps_per_epoch:
                break
            x, y = x.to(device), y.to(device)
            loss, logits = loss_fn(model, x, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
            if logits is not None and logits.ndim == 2:
                correct += int((logits.argmax(1) == y).sum())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        bar.close()
        val_loss, val_acc = (float("nan"), float("nan"))
        if val_loader is not None:
            val_loss, val_acc = evaluate(model, val_loader, device=device)
        rec = EpochRecord(
            epoch=epoch + 1,
            train_loss=loss_sum / max(seen, 1),
            train_acc=correct / max(seen, 1),
            val_loss=val_loss,
            val_acc=val_acc,
            lr=float(sched.get_last_lr()[0]),
            seconds=time.perf_counter() - t0,
        )
        history.append(rec)
        log.info("epoch", **asdict(rec))
        if checkpoint is not None:
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": epoch + 1,
                    "history": [asdict(r) for r in history],
                    "identity": identity,
                },
                Path(checkpoint),
            )
    return history
