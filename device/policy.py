"""Run-time partition switching (BottleNet Sec. 3.4): pick the split with the lowest latency.

Why this model: the paper's selection step ranks splits by device compute + transfer + cloud
compute; at run time the only thing that moves quickly is the server's load (and the link),
so each split's estimate is

    head_ms + encode_ms + bytes * 8 / bandwidth + tail_ms * (1 + queue_depth)

with head/encode ms and bytes measured on this board (EWMA), bandwidth estimated from
replies (RTT minus the server's own time), ``tail_ms`` the split's tail time on an idle
server (from config, the manifest's profile, or measured while the split is active) and
``queue_depth`` the load the server reports in every reply and pong. A switch needs the best
split to beat the current one by ``hysteresis`` and the current one to have run for
``min_dwell_s`` — otherwise two near-equal splits would flap on every noisy reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_ALPHA = 0.2  # EWMA weight of a new sample


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else (1 - _ALPHA) * old + _ALPHA * new


@dataclass
class SplitStats:
    name: str
    head_ms: float | None = None
    encode_ms: float | None = None
    bytes: float | None = None
    tail_ms: float | None = None  # idle-server tail time
    tail_fixed: bool = False  # tail_ms came from config/manifest: do not overwrite

    def observe_device(self, head_ms: float, encode_ms: float, nbytes: int) -> None:
        self.head_ms = _ewma(self.head_ms, head_ms)
        self.encode_ms = _ewma(self.encode_ms, encode_ms)
        self.bytes = _ewma(self.bytes, float(nbytes))


@dataclass(frozen=True)
class Switch:
    old: str
    new: str
    estimates_ms: dict[str, float]
    reason: str


@dataclass
class PartitionPolicy:
    """Keeps per-split estimates and decides when to move to another split."""

    names: list[str]
    active: str
    hysteresis: float = 0.15
    min_dwell_s: float = 5.0
    bandwidth_bps: float = 10e6
    enabled: bool = True
    splits: dict[str, SplitStats] = field(default_factory=dict)
    queue_depth: int = 0
    since: float = 0.0  # monotonic time the active split was chosen

    def __post_init__(self) -> None:
        for n in self.names:
            self.splits.setdefault(n, SplitStats(n))
        if self.active not in self.splits:
            raise ValueError(f"active split {self.active!r} is not one of {self.names}")

    def set_tail_ms(self, name: str, tail_ms: float) -> None:
        s = self.splits[name]
        s.tail_ms = float(tail_ms)
        s.tail_fixed = True

    def observe_device(self, name: str, head_ms: float, encode_ms: float, nbytes: int) -> None:
        self.splits[name].observe_device(head_ms, encode_ms, nbytes)

    def observe_reply(
        self,
        name: str,
        nbytes: int,
        rtt_ms: float,
        server_ms: float,
        compute_ms: float,
        queue_depth: int,
    ) -> None:
        """A reply for split ``name``: refine bandwidth, its tail time and the load."""
        self.queue_depth = queue_depth
        net_s = (rtt_ms - server_ms) / 1e3
        if net_s > 1e-5 and nbytes > 0:
            self.bandwidth_bps = _ewma(self.bandwidth_bps, nbytes * 8 / net_s)
        s = self.splits[name]
        if not s.tail_fixed and queue_depth == 0:
            s.tail_ms = _ewma(s.tail_ms, compute_ms)

    def observe_load(self, queue_depth: int) -> None:
        self.queue_depth = queue_depth

    def estimate_ms(self, name: str) -> float | None:
        s = self.splits[name]
        if s.head_ms is None or s.bytes is None:
            return None
        tail = s.tail_ms
        if tail is None:  # never measured: assume it costs what the active split's tail costs
            tail = self.splits[self.active].tail_ms or 0.0
        return (
            s.head_ms
            + (s.encode_ms or 0.0)
            + s.bytes * 8 / self.bandwidth_bps * 1e3
            + tail * (1 + self.queue_depth)
        )

    def decide(self, now: float) -> Switch | None:
        """The switch to make now, if any (the caller performs it and calls :meth:`switched`)."""
        if not self.enabled or len(self.splits) < 2 or now - self.since < self.min_dwell_s:
            return None
        est = {n: e for n in self.names if (e := self.estimate_ms(n)) is not None}
        if self.active not in est or len(est) < 2:
            return None
        best = min(est, key=est.__getitem__)
        if best == self.active or est[best] > est[self.active] * (1 - self.hysteresis):
            return None
        return Switch(
            old=self.active,
            new=best,
            estimates_ms={k: round(v, 3) for k, v in est.items()},
            reason=f"queue_depth={self.queue_depth} bandwidth_mbps={self.bandwidth_bps / 1e6:.2f}",
        )

    def switched(self, name: str, now: float) -> None:
        self.active = name
        self.since = now
