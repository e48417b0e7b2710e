"""Algorithm 1 of BottleNet (Sec. 2.3): pick the partition minimizing latency or device energy.

The pure parts live here (bit search, cost, selection) so they can be tested with hand-computed
numbers; training/profiling candidates feeds them `Candidate` records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from training.linkmodel import Link


@dataclass(frozen=True)
class Candidate:
    """One profiled (split, C', s, bits) point."""

    split: str
    channels: int
    stride: int
    bits: int
    accuracy: float
    head_ms: float
    head_power_mw: float
    nbytes: float
    cloud_ms: float = 0.0


@dataclass(frozen=True)
class Cost:
    latency_ms: float
    energy_mj: float


def cost(c: Candidate, link: Link) -> Cost:
    """End-to-end latency = head + transmit + cloud; device energy = head + radio (Sec. 2.3)."""
    tx = link.tx_ms(c.nbytes)
    lat = c.head_ms + tx + c.cloud_ms
    energy = c.head_power_mw * c.head_ms / 1e3 + link.tx_energy_mj(c.nbytes)
    return Cost(lat, energy)


def fewest_bits(
    accuracy_at: Callable[[int], float], baseline: float, budget: float = 2.0, bits=range(1, 9)
) -> tuple[int, float] | None:
    """Fewest bits whose accuracy (percent) is within `budget` points of `baseline`, else None."""
    for b in sorted(bits):
        acc = accuracy_at(b)
        if acc >= baseline - budget:
            return b, acc
    return None


def select(cands: Sequence[Candidate], link: Link, objective: str = "latency") -> Candidate:
    if objective not in ("latency", "energy"):
        raise ValueError(f"objective must be 'latency' or 'energy', got {objective!r}")
    if not cands:
        raise ValueError("no candidates to select from")
    key = (
        (lambda c: cost(c, link).latency_ms)
        if objective == "latency"
        else (lambda c: cost(c, link).energy_mj)
    )
    return min(cands, key=key)
