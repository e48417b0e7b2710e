"""BottleNet++ (seed 002): encoder -> non-trainable channel layer -> decoder.

The channel condition (SNR in dB for AWGN, erasure probability p for the binary erasure
channel) is fed to encoder and decoder by FiLM-style conditioning: a tiny MLP maps the
condition to per-channel (gamma, beta) applied to the features. Why FiLM rather than a
constant input plane: it adds no spatial input channels and keeps the bottleneck shape the
same as the unconditioned model.
"""

from __future__ import annotations

import torch
from torch import nn


class AWGNChannel(nn.Module):
    """Power-normalize each sample to unit average power, then add N(0, 10^(-snr/10))."""

    def forward(self, z: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(1)
        power = flat.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-12)
        x = (flat / power.sqrt()).view_as(z)
        noise_var = torch.pow(10.0, -snr_db.view(-1) / 10.0).view(-1, *([1] * (z.dim() - 1)))
        return x + torch.randn_like(x) * noise_var.sqrt()


class ErasureChannel(nn.Module):
    """Each entry independently erased (zeroed) with probability p."""

    def forward(self, z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        p = p.view(-1, *([1] * (z.dim() - 1)))
        keep = (torch.rand_like(z) >= p).to(z.dtype)
        return z * keep


class FiLM(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 2 * channels))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gb = self.mlp(cond.view(-1, 1).to(x.dtype))
        g, b = gb.chunk(2, dim=1)
        return x * (1 + g[..., None, None]) + b[..., None, None]


def normalize_condition(kind: str, value: torch.Tensor) -> torch.Tensor:
    """Scale SNR dB (~[-10,30]) and p ([0,1]) to O(1) inputs for the FiLM MLP."""
    return value / 20.0 if kind == "awgn" else value


class BottleNetPP(nn.Module):
    """head (features) -> conv encoder (C') -> channel -> conv decoder -> tail."""

    def __init__(
        self, head: nn.Module, tail: nn.Module, feat_ch: int, bottleneck_ch: int, channel: str
    ) -> None:
        super().__init__()
        if channel not in ("awgn", "erasure"):
            raise ValueError(f"channel must be 'awgn' or 'erasure', got {channel!r}")
        self.kind = channel
        self.head, self.tail = head, tail
        self.enc = nn.Conv2d(feat_ch, bottleneck_ch, 3, padding=1)
        self.enc_film = FiLM(bottleneck_ch)
        self.channel = AWGNChannel() if channel == "awgn" else ErasureChannel()
        self.dec = nn.Conv2d(bottleneck_ch, feat_ch, 3, padding=1)
        self.dec_film = FiLM(feat_ch)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = normalize_condition(self.kind, cond)
        z = self.enc_film(self.enc(self.head(x)), c)
        z = self.channel(z, cond)
        y = torch.relu(self.dec_film(self.dec(z), c))
        return self.tail(y)


def small_cnn_parts(in_ch: int = 1, num_classes: int = 10) -> tuple[nn.Module, nn.Module, int]:
    """A small head/tail pair for tests and quick runs (the CLI uses resnet_small when wired)."""
    head = nn.Sequential(nn.Conv2d(in_ch, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    tail = nn.Sequential(
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )
    return head, tail, 16


def sample_condition(
    kind: str, n: int, lo: float, hi: float, gen: torch.Generator | None = None
) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def train_steps(
    model: BottleNetPP, loader, steps: int, lo: float, hi: float, lr: float = 3e-3
) -> list[float]:
    """Train with a random channel condition per sample in [lo, hi]; returns per-step losses."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses: list[float] = []
    model.train()
    it = iter(loader)
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        cond = sample_condition(model.kind, x.shape[0], lo, hi)
        loss = nn.functional.cross_entropy(model(x, cond), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def evaluate(model: BottleNetPP, loader, value: float) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        cond = torch.full((x.shape[0],), float(value))
        correct += int((model(x, cond).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(total, 1)


__all__ = ["AWGNChannel", "BottleNetPP", "ErasureChannel", "FiLM", "evaluate", "train_steps"]
