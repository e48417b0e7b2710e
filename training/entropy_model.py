"""A learned entropy model on the bottleneck: a rate term for the loss, tables for the wire.

Why: fixed n-bit quantization spends the same bits on every value whatever the features
look like. Supervised compression for split computing (SC2, Matsubara et al. 2022) trains
the bottleneck together with an entropy model so a rate term makes the features cheap to
code. The entropy model here is the factorized prior of Ballé et al. 2018 ("Variational
image compression with a scale hyperprior", appendix 6.1): one learned univariate density
per channel, whose cumulative is a small monotone MLP.

Why our own and not CompressAI's ``EntropyBottleneck``: ``pip install compressai`` resolves
beside torch 2.13.0, but its dependency torchvision 0.28.0 is built for another torch and
fails at import (``operator torchvision::nms does not exist``), so ``import compressai``
fails; checked 2026-12-05 and uninstalled again.

The loop (:class:`RateBottleneck`, placed as a ``SplitNet``'s compressor): the head's output
z in [0, out_max] is put in code units y = z / step (step = out_max / (2**bits - 1), the
wire's n-bit code step); the tail sees straight-through rounded codes (what the wire
delivers), and the rate term is -log2 p(y + u), u ~ U(-1/2, 1/2) (additive noise as the
differentiable proxy of rounding) in training, -log2 p(round(y)) in evaluation. After
training, :meth:`RateBottleneck.pmf` gives each channel's probabilities of the integer codes,
which become the rANS frequency tables in the manifests (``wire.entropy_tables``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wire.entropy_tables import EntropyTables, rans_tables_from_pmf, zstd_dict_tables_from_codes

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

_MIN_LIKELIHOOD = 1e-9


class FactorizedPrior(nn.Module):
    """Per-channel learned density (Ballé 2018): cdf(x) = sigmoid(f_c(x)), f_c monotone."""

    def __init__(
        self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0
    ):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(
                nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5))
            )
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """(C, 1, N) values -> (C, 1, N) logits of the cumulative; monotone in x."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(y - 1/2 < Y <= y + 1/2) per element of (B, C, H, W), computed stably."""
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate on the flat side of the sigmoid
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3).clamp_min(_MIN_LIKELIHOOD)

    @torch.no_grad()
    def pmf(self, levels: int) -> np.ndarray:
        """(C, levels + 1) probabilities of the codes 0..levels; the tails fold into the ends."""
        c = self.matrices[0].shape[0]
        edges = torch.arange(levels + 2, dtype=torch.float32) - 0.5  # -0.5 .. levels + 0.5
        cdf = torch.sigmoid(self.logits_cdf(edges.expand(c, 1, -1).contiguous()))[:, 0, :]
        cdf[:, 0] = 0.0
        cdf[:, -1] = 1.0
        return (cdf[:, 1:] - cdf[:, :-1]).clamp_min(0.0).double().numpy()


class RateBottleneck(nn.Module):
    """Compressor between head and tail: straight-through n-bit codes plus a rate estimate.

    ``bits_per_frame`` holds the last forward pass's estimated bits per frame (a tensor with
    gradient in training), which :func:`rate_loss` adds to the task loss with weight λ.
    """

    def __init__(self, channels: int, out_max: float, bits: int = 8) -> None:
        super().__init__()
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {bits}")
        self.bits = bits
        self.levels = (1 << bits) - 1
        self.step = float(out_max) / self.levels
        # the density starts spread over the code range (Ballé's init_scale of 10 assumes
        # latents within about ±10; 8-bit codes span 0..255)
        self.prior = FactorizedPrior(channels, init_scale=max(10.0, float(self.levels)))
        self.bits_per_frame: torch.Tensor = torch.zeros(())
        self.enabled = True

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = z / self.step
        codes = torch.round(y).clamp(0, self.levels)
        if self.training:
            noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            lik = self.prior.likelihood(noisy)
        else:
            lik = self.prior.likelihood(codes)
        self.bits_per_frame = -torch.log2(lik).sum() / z.shape[0]
        if not self.enabled:
            return z
        return (y + (codes - y).detach()) * self.step  # the tail sees the wire's codes

    def pmf(self) -> np.ndarray:
        return self.prior.pmf(self.levels)

    def fit_prior(
        self, z: torch.Tensor, steps: int = 200, batch: int = 32, lr: float = 0.05, seed: int = 0
    ) -> float:
        """Fit the prior alone to the bottleneck outputs ``z`` (B, C, H, W); bits/frame after.

        Why: the prior starts spread over the whole code range (several bits per value), and
        inside a short fine-tune with a one-cycle schedule it learns too slowly to follow the
        features, so the rate term would first price the prior's mismatch rather than the
        features. Fitting it to the current codes first (a few hundred cheap steps, no
        backbone) makes the rate term honest from the first batch. Deterministic in ``seed``
        and independent of the global RNG, so resumable runs stay bit-exact.
        """
        gen = torch.Generator().manual_seed(seed)
        y = (z.detach().float() / self.step).clamp(0, self.levels)
        opt = torch.optim.Adam(self.prior.parameters(), lr=lr)
        for _ in range(steps):
            idx = torch.randint(len(y), (min(batch, len(y)),), generator=gen)
            noise = torch.rand(y[idx].shape, generator=gen) - 0.5
            bits = -torch.log2(self.prior.likelihood(y[idx] + noise)).sum() / len(idx)
            opt.zero_grad(set_to_none=True)
            bits.backward()
            opt.step()
        with torch.no_grad():
            codes = torch.round(y)
            return float(-torch.log2(self.prior.likelihood(codes)).sum() / len(y))

    def tables(self, train_codes: np.ndarray, dict_size: int = 4096) -> dict[str, EntropyTables]:
        """Both table kinds for the manifests: rANS from the prior, zstd dict from the codes."""
        return {
            "rans": rans_tables_from_pmf(self.pmf(), self.bits),
            "zstd_dict": zstd_dict_tables_from_codes(train_codes, self.bits, dict_size),
        }


def rate_loss(base: LossFn, rate: RateBottleneck, weight: float) -> LossFn:
    """task loss + weight × estimated bytes/frame: λ trades bytes for accuracy."""
    if weight < 0:
        raise ValueError(f"rate weight must be >= 0, got {weight}")

    def fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        loss, logits = base(model, x, y)
        return loss + weight * rate.bits_per_frame / 8.0, logits

    return fn
