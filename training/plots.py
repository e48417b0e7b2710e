"""Loss / accuracy curves from a training history (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from training.trainer import EpochRecord
from wire.atomicfile import write_atomic


def save_curves(history: list[EpochRecord], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, [r.train_loss for r in history], "o-", label="train")
    ax1.plot(epochs, [r.val_loss for r in history], "s-", label="val")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.legend()
    ax2.plot(epochs, [100 * r.train_acc for r in history], "o-", label="train")
    ax2.plot(epochs, [100 * r.val_acc for r in history], "s-", label="val")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("top-1 accuracy (%)")
    ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path
