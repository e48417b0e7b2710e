"""Run-time partition switching (BottleNet Sec. 3.4, Algorithm 1 at run time): pick the
partition — a split, the whole model on the board (``local``) or on the server (``cloud``) —
that is best for the configured objective: ``latency``, device ``energy`` per inference, or a
weighted ``mix``.

Why this model: the paper's selection step ranks splits by device compute + transfer + cloud
compute; at run time the only thing that moves quickly is the server's load (and the link),
so each split's estimate is

    head_ms + encode_ms + bytes * 8 / bandwidth + tail_ms * (1 + queue_depth)

with head/encode ms and bytes measured on this board, the transfer time measured from
the partition's own replies (RTT minus the server's own time; ``bytes * 8 / bandwidth``, the
bandwidth estimated from all replies, until it has some), ``tail_ms`` the split's tail time on an idle
server (from config, the manifest's profile, or measured while the split is active) and
``queue_depth`` the load the server reports in every reply and pong. A switch needs the best
split to beat the current one by ``hysteresis`` (twice that while it is known only from
probe frames, which run alone and so look faster than the partition will run) and the current one to have run for
``min_dwell_s`` — otherwise two near-equal splits would flap on every noisy reply.

The model leaves things out (the frame's age when taken, preprocessing, the server's
decode and queue, a loaded board's scheduling) and they differ by partition: a picture's
frames measured 122 ms capture -> answer where the model said 40. So each estimate adds
the partition's own measured residual (answered frames' latency minus the model): the
model carries what moves (transfer, server load), the residual anchors it to what was
measured.

Every measured quantity (head, encode, bytes, transfer, tail, energy, latency) is the
median of its last ``window`` samples (7), not a running mean: on a loaded machine per-frame
times and energies are heavy-tailed, and one frame preempted for 100 ms must not move an
estimate past the hysteresis (an EWMA did: the daemon switched and switched back a second
later). A sustained change — a slower link — moves the median after ``window // 2 + 1``
frames of the partition that runs.

A ``local`` partition has no transfer and no tail: its latency estimate is its head time.
Energy is measured, not modelled: the device energy of every answered frame (the INA226
samples over capture → answer, which include the radio while a frame is on the link) goes
into the partition's estimate. A partition whose manifest accuracy is below ``min_accuracy`` is
never chosen.

Estimates of partitions that are not running go stale when the link or the server's load
changes, so they are probed: the daemon runs one frame on another partition now and then.
A probe is not free — on 3G one cloud frame costs the board as much energy as ~18 local
ones — so the probe rate is bounded by cost, not only by time:

* start-up exploration: every eligible partition gets ``min_samples`` answered frames
  (default 3 in ``device.toml``) before the policy may switch to it — or away from it,
  when it is the active one — so no switch is made on a prior (bytes / assumed
  bandwidth) that was never checked against a reply;
* after that, at most one probe per ``probe_interval_s`` (default 10 s), on the partition
  observed longest ago, and a partition ``n`` whose measured cost is ``r`` times the
  active one's only every ``(r - 1) · k / probe_budget`` answered frames (``k`` the number
  of other partitions): the probes together add at most ``probe_budget`` (default 5 %)
  to the cost of running on the best partition alone. A cheap partition (``r <= 1``) is
  probed every interval — it is the one that may win.

Do not pay to explore what cannot win. Before a partition is explored (or probed while it
has no measure of its own) the policy bounds its cost from below with what it has measured:

* latency ≥ head + encode (+ ``bytes * 8 / bandwidth`` for a server partition: the least
  time its payload needs on the link, at the bandwidth measured from all replies);
* device energy ≥ that time × the board's lowest mean power over any answered frame
  (energy / latency of a measured frame; no energy bound before there is one — and
  nothing is explored before a frame is answered anyway): the board draws at least that
  much while it computes the head or waits for the link;
* ``mix``: the same bounds through the mix formula.

A partition whose bound is worse than the best measured partition's cost by more than
``hysteresis`` is not explored — on 3G a cloud frame costs ~100 local ones, and three
start-up frames of it were 29 % on top of local over a 1000-frame run. Exploration takes
the unexplored partitions in order of their bounds (the most promising first, one at a
time), so the cheap one is measured before a costly one is judged against it, and nothing
is explored before some partition has answered a frame (there is nothing to judge by).
A partition that could win is explored as before; once measured, its own measures decide.
A never-measured partition's ``cost_ratio`` (which sets its probe rate) is its bound over
the active one's cost, and its probe budget counts from the start, so a hopeless cloud
is probed at the budgeted rate and not every interval. The bound falls when the link gets
faster (replies raise the measured bandwidth), and exploration resumes.

With the ``latency`` objective splits are not probed after start-up: a split's latency
model is built from measures every split shares (bandwidth, queue depth) and the board's
own head/encode times, while the cloud model's server time is its own.

With the ``mix`` objective each candidate costs
``w · latency / best latency + (1 − w) · energy / best energy`` (dimensionless, 1 is
the best possible), ``w`` = ``latency_weight``.

The objective is written once, :func:`objective_value`; what differs between its three
users is only the normalisers they hand it (the "best" latency and energy):

* :meth:`PartitionPolicy.decide` ranks the candidates, so it normalises by the best
  among the candidates (the one being ranked included);
* :meth:`PartitionPolicy.hopeless` judges an unexplored partition's lower bound against
  what was measured, so it normalises by the best among the *measured other*
  partitions only — the bound is not a measure and must not move the yardstick it is
  judged by;
* :meth:`PartitionPolicy.cost_ratio` prices a partition against the active one, so it
  normalises by the active partition's own measures (the active one is then 1).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median

WINDOW = 7  # recent samples per measure; the estimate is their median
OBJECTIVES = ("latency", "energy", "mix")


def objective_value(
    objective: str,
    latency_weight: float,
    latency_ms: float | None,
    energy_mj: float | None,
    best_latency_ms: float | None = None,
    best_energy_mj: float | None = None,
) -> float:
    """The cost of a (latency, device energy) pair under ``objective`` (lower is better).

    Why one function: ranking candidates (:meth:`PartitionPolicy.decide`), bounding an
    unexplored partition (:meth:`PartitionPolicy.hopeless`) and pricing a probe
    (:meth:`PartitionPolicy.cost_ratio`) must mean the same objective, and three copies
    of its branches would have to be kept in step by hand. The callers differ only in the
    normalisers ``best_latency_ms`` / ``best_energy_mj`` they pass (the module docstring
    says why), which only ``mix`` uses; a measure the objective does not use may be None.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not one of {OBJECTIVES}")
    if objective == "latency":
        if latency_ms is None:
            raise ValueError("objective 'latency' needs a latency, got None")
        return latency_ms
    if energy_mj is None:
        raise ValueError(f"objective {objective!r} needs a device energy, got None")
    if objective == "energy":
        return energy_mj
    if latency_ms is None or best_latency_ms is None or best_energy_mj is None:
        raise ValueError(
            "objective 'mix' needs a latency and the best latency and energy to normalise by"
        )
    w = latency_weight
    return w * (latency_ms / max(best_latency_ms, 1e-9)) + (1 - w) * (
        energy_mj / max(best_energy_mj, 1e-9)
    )


def _has_measures(objective: str, latency_ms: float | None, energy_mj: float | None) -> bool:
    """True when the pair has every measure ``objective`` uses (None: not measured)."""
    return (objective == "energy" or latency_ms is not None) and (
        objective == "latency" or energy_mj is not None
    )


class Recent:
    """The last ``size`` samples of one measure; its value is their median.

    Why a median and not an EWMA: on a loaded board one frame in ten may take ten times
    as long (the scheduler, not the link or the model). An EWMA with weight 0.2 moves 2x
    toward such an outlier at once — past a 15 % hysteresis — and the daemon switched
    partition and back a second later. A median of ``size`` samples ignores up to
    ``size // 2`` outliers and follows a sustained change after ``size // 2 + 1`` samples.
    """

    __slots__ = ("_d",)

    def __init__(self, size: int = WINDOW) -> None:
        self._d: deque[float] = deque(maxlen=size)

    def add(self, x: float) -> float:
        self._d.append(float(x))
        return median(self._d)

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class SplitStats:
    name: str
    head_ms: float | None = None
    encode_ms: float | None = None
    bytes: float | None = None
    tail_ms: float | None = None  # idle-server tail time
    tail_fixed: bool = False  # tail_ms came from config/manifest: do not overwrite
    kind: str = "split"  # split | local | cloud
    energy_mj: float | None = None  # device energy per inference (median of recent frames)
    latency_ms: float | None = None  # measured capture -> answer (median)
    # measured capture -> answer minus the model (median): frame age, preprocessing, the
    # server's decode and queue, a busy board's scheduling — what the model leaves out
    residual_ms: float | None = None
    accuracy: float | None = None  # from the manifest; None: unknown
    observed: float = -1e18  # monotonic time of the last frame run on this partition
    net_ms: float | None = None  # this partition's own transfer time (RTT - server time)
    samples: int = 0  # answered frames measured on this partition
    run_samples: int = 0  # ... of which while it was the active one (not probes)
    probe_frame: int = -(10**9)  # the policy's frame count when it was last probed
    window: int = WINDOW
    recent: dict[str, Recent] = field(default_factory=dict, repr=False)

    def add(self, measure: str, value: float) -> None:
        """One sample of ``measure``: the attribute becomes the median of its window."""
        r = self.recent.get(measure)
        if r is None:
            r = self.recent[measure] = Recent(self.window)
        setattr(self, measure, r.add(value))

    def observe_device(self, head_ms: float, encode_ms: float, nbytes: int) -> None:
        self.add("head_ms", head_ms)
        self.add("encode_ms", encode_ms)
        self.add("bytes", float(nbytes))


@dataclass(frozen=True)
class Switch:
    old: str
    new: str
    estimates_ms: dict[str, float]
    reason: str
    energy_mj: dict[str, float] = field(default_factory=dict)


@dataclass
class PartitionPolicy:
    """Keeps per-split estimates and decides when to move to another split."""

    names: list[str]
    active: str
    hysteresis: float = 0.15
    min_dwell_s: float = 5.0
    bandwidth_bps: float = 10e6
    enabled: bool = True
    objective: str = "latency"
    latency_weight: float = 0.5  # mix objective: weight of latency (1 - w: energy)
    min_accuracy: float | None = None
    probe_interval_s: float = 10.0  # 0: no periodic probes (start-up exploration still runs)
    probe_budget: float = 0.05  # probes add at most this fraction to the best one's cost
    min_samples: int = 0  # answered frames a partition needs before it may be chosen
    window: int = WINDOW  # samples per measure whose median is the estimate
    kinds: dict[str, str] = field(default_factory=dict)
    accuracy: dict[str, float | None] = field(default_factory=dict)
    splits: dict[str, SplitStats] = field(default_factory=dict)
    queue_depth: int = 0
    since: float = 0.0  # monotonic time the active split was chosen
    last_probe: float = 0.0
    frames: int = 0  # answered frames observed on any partition
    min_power_w: float | None = None  # lowest mean power of any answered frame (mJ / ms)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r} is not one of {OBJECTIVES}")
        if not 0 < self.probe_budget <= 1:
            raise ValueError(f"probe_budget must be in (0, 1], got {self.probe_budget}")
        if not 0 <= self.latency_weight <= 1:
            raise ValueError(f"latency_weight must be in [0, 1], got {self.latency_weight}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        self._bandwidth = Recent(self.window)
        self._bandwidth.add(self.bandwidth_bps)  # the configured prior: one vote among replies
        for n in self.names:
            st = self.splits.setdefault(n, SplitStats(n, window=self.window))
            st.kind = self.kinds.get(n, st.kind)
            st.accuracy = self.accuracy.get(n, st.accuracy)
        if self.active not in self.splits:
            raise ValueError(f"active split {self.active!r} is not one of {self.names}")

    def eligible(self, name: str) -> bool:
        """False for a partition whose manifest accuracy is below ``min_accuracy``."""
        acc = self.splits[name].accuracy
        return self.min_accuracy is None or acc is None or acc >= self.min_accuracy

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
        s = self.splits[name]
        if net_s > 1e-5 and nbytes > 0:
            self.bandwidth_bps = self._bandwidth.add(nbytes * 8 / net_s)
            s.add("net_ms", net_s * 1e3)
        if not s.tail_fixed and queue_depth == 0:
            s.add("tail_ms", compute_ms)

    def observe_load(self, queue_depth: int) -> None:
        self.queue_depth = queue_depth

    def observe_frame(
        self, name: str, now: float, energy_mj: float | None, latency_ms: float | None
    ) -> None:
        """An answered frame of ``name``: its measured device energy and latency."""
        s = self.splits[name]
        s.observed = now
        s.samples += 1
        s.run_samples += name == self.active
        self.frames += 1
        if energy_mj is not None:
            s.add("energy_mj", energy_mj)
            if latency_ms is not None and latency_ms > 0 and energy_mj > 0:
                w = energy_mj / latency_ms
                self.min_power_w = w if self.min_power_w is None else min(self.min_power_w, w)
        if latency_ms is not None:
            s.add("latency_ms", latency_ms)
            if (model := self.model_ms(name)) is not None:
                # Never below 0: a frame's own parts fit in its latency; a negative one is
                # the model's medians still holding start-up samples (the cloud's first
                # server runs are slow), and it would outlive them in the window — the
                # picture was then estimated at 4 ms against a measured 80.
                s.add("residual_ms", max(0.0, latency_ms - model))

    def probe_due(self, now: float) -> str | None:
        """The partition to run the next frame on to refresh its estimates, if a probe is due.

        The caller runs one frame there (without switching) and calls :meth:`probed`.
        """
        if not self.enabled or len(self.splits) < 2:
            return None
        others = [n for n in self.names if n != self.active and self.eligible(n)]
        # Start-up exploration: measure every partition before trusting its estimates.
        # A probe that got no answer (dropped, lost) is not retried before some other frame
        # was answered: a partition that cannot answer must not take every frame.
        # Most promising first, one at a time (the next waits for this one's answer), and
        # never one whose lower bound already loses to a measured partition.
        unexplored = [
            n for n in others if self.splits[n].samples < self.min_samples and not self.hopeless(n)
        ]
        if unexplored:
            if not any(self.splits[n].samples > 0 for n in self.names):
                return None  # nothing answered yet: no cost to judge a bound by
            nxt = min(unexplored, key=lambda n: (self.time_floor_ms(n) or 0.0, n))
            return nxt if self.frames > self.splits[nxt].probe_frame else None
        if self.probe_interval_s <= 0 or now - self.last_probe < self.probe_interval_s:
            return None
        if self.objective == "latency":
            # A split's latency model needs no reply of its own (bandwidth and queue depth are
            # shared by every split, head/encode are the board's): only the board's own
            # partitions and the cloud model (a server time of its own, bytes of a picture)
            # are re-timed.
            others = [n for n in others if self.splits[n].kind != "split"]
        # A never-probed partition's budget counts from the start, not from -infinity.
        due = [
            n
            for n in others
            if self.frames - max(self.splits[n].probe_frame, 0) >= self.probe_gap(n)
        ]
        if not due:
            return None
        return min(due, key=lambda n: self.splits[n].observed)

    def probe_gap(self, name: str) -> int:
        """Answered frames between two probes of ``name``, so that probing every other
        partition adds at most ``probe_budget`` to the active partition's cost."""
        r = self.cost_ratio(name)
        if r <= 1:
            return 0
        k = max(1, len(self.names) - 1)
        return int((r - 1) * k / self.probe_budget + 0.999999)

    def cost_ratio(self, name: str) -> float:
        """``name``'s measured cost over the active partition's (1.0 when unknown).

        A measure ``name`` does not have yet is replaced by its lower bound
        (:meth:`floors`), so a never-measured, hopeless partition is probed at the
        budgeted rate of what it costs at least.
        """
        a, n = self.splits[self.active], self.splits[name]
        lat_floor, energy_floor = self.floors(name)
        n_lat = n.latency_ms if n.latency_ms is not None else lat_floor
        n_energy = n.energy_mj if n.energy_mj is not None else energy_floor
        # A measure is compared when both have it (the active one's non-zero: it divides).
        has_lat = bool(a.latency_ms) and n_lat is not None
        has_energy = bool(a.energy_mj) and n_energy is not None
        w, objective = self.latency_weight, self.objective
        if objective == "mix" and not (has_lat and has_energy):
            # One measure unknown (no power monitor, say): the mix is judged by the one it
            # has, unless that one weighs nothing in it.
            objective = "latency" if has_lat and w > 0 else "energy" if has_energy and w < 1 else ""
        if not objective or not _has_measures(
            objective, n_lat if has_lat else None, n_energy if has_energy else None
        ):
            return 1.0
        # Normalised by the active partition's own measures, so the active one is worth 1
        # under ``mix`` too and the quotient is the weighted mean of the two ratios.
        active = objective_value(objective, w, a.latency_ms, a.energy_mj, a.latency_ms, a.energy_mj)
        return objective_value(objective, w, n_lat, n_energy, a.latency_ms, a.energy_mj) / active

    def time_floor_ms(self, name: str) -> float | None:
        """The least capture -> answer time ``name`` can take: its device compute, plus
        for a server partition its payload at the measured bandwidth (None: no head timed)."""
        s = self.splits[name]
        if s.head_ms is None or s.bytes is None:
            return None
        t = s.head_ms + (s.encode_ms or 0.0)
        if s.kind != "local":
            t += s.bytes * 8 / self.bandwidth_bps * 1e3
        return t

    def floors(self, name: str) -> tuple[float | None, float | None]:
        """Lower bounds of ``name``'s latency (ms) and device energy (mJ) from measures.

        Energy: the board draws at least its lowest measured mean power for at least
        :meth:`time_floor_ms` — head compute and time on the link. No energy bound before
        a frame with energy and latency was answered (exploration waits for one anyway).
        """
        t = self.time_floor_ms(name)
        power = self.min_power_w
        return t, (None if t is None or power is None else power * t)

    def _current_latency(self, name: str) -> float | None:
        est = self.estimate_ms(name)
        return est if est is not None else self.splits[name].latency_ms

    def hopeless(self, name: str) -> bool:
        """True when ``name``'s lower bound loses to a measured partition by more than
        the hysteresis: exploring it would only pay for frames that cannot win."""
        lat_floor, energy_floor = self.floors(name)
        if not _has_measures(self.objective, lat_floor, energy_floor):
            return False
        # A measured partition's latency is judged by its current estimate: that follows the
        # server's reported queue at once, where the median of measured frames lags (or, on a
        # server that reports load before it slows down, never moves) — a split that cannot
        # win on an idle server may win when the others' tails queue.
        others = [
            (self._current_latency(m), s.energy_mj)
            for m, s in self.splits.items()
            if m != name and s.samples > 0 and self.eligible(m)
        ]
        measured = [(lat, e) for lat, e in others if _has_measures(self.objective, lat, e)]
        if not measured:
            return False
        # Normalised by the best measured other partition, not including the bound: it is
        # judged against what was measured, and a bound is not a measure.
        best_l = min((lat for lat, _ in measured if lat is not None), default=None)
        best_e = min((e for _, e in measured if e is not None), default=None)

        def value(lat: float | None, e: float | None) -> float:
            return objective_value(self.objective, self.latency_weight, lat, e, best_l, best_e)

        best = min(value(lat, e) for lat, e in measured)
        return value(lat_floor, energy_floor) > best * (1 + self.hysteresis)

    def probed(self, now: float, name: str | None = None) -> None:
        """A probe was started at ``now`` (on ``name``): the next one waits its turn."""
        self.last_probe = now
        if name is not None:
            self.splits[name].probe_frame = self.frames

    def cost(self, name: str, est: dict[str, float], energy: dict[str, float]) -> float:
        """``name``'s objective value among the candidates in ``est``/``energy`` (lower wins).

        Normalised by the best latency and energy among those candidates, ``name``
        included: :meth:`decide` ranks the candidates against each other.
        """
        return objective_value(
            self.objective,
            self.latency_weight,
            est.get(name),
            energy.get(name),
            min(est.values(), default=None),
            min(energy.values(), default=None),
        )

    def estimates(self) -> dict[str, dict[str, float | None]]:
        """Every partition's current estimates (for logs, metrics and the STATUS line)."""
        return {
            n: {
                "latency_ms": _round(self.estimate_ms(n)),
                "energy_mj": _round(s.energy_mj),
                "measured_latency_ms": _round(s.latency_ms),
            }
            for n, s in self.splits.items()
        }

    def estimate_ms(self, name: str) -> float | None:
        """``name``'s capture -> answer estimate: the model plus what it leaves out."""
        model = self.model_ms(name)
        if model is None:
            return None
        return model + (self.splits[name].residual_ms or 0.0)

    def model_ms(self, name: str) -> float | None:
        """head + encode + transfer + loaded tail, from the partition's measured parts."""
        s = self.splits[name]
        if s.head_ms is None or s.bytes is None:
            return None
        if s.kind == "local":  # the whole model on the board: no transfer, no tail
            return s.head_ms + (s.encode_ms or 0.0)
        tail = s.tail_ms
        if tail is None:  # never measured: assume it costs what the active split's tail costs
            tail = self.splits[self.active].tail_ms or 0.0
        # Its own measured transfer time when it has replies: a shaper's burst bucket lets a
        # few hundred bytes through at once while a picture waits for tokens, so one shared
        # bandwidth misjudges payloads of very different sizes. Never run: bytes/bandwidth.
        net = s.net_ms if s.net_ms is not None else s.bytes * 8 / self.bandwidth_bps * 1e3
        return s.head_ms + (s.encode_ms or 0.0) + net + tail * (1 + self.queue_depth)

    def decide(self, now: float) -> Switch | None:
        """The switch to make now, if any (the caller performs it and calls :meth:`switched`)."""
        if not self.enabled or len(self.splits) < 2 or now - self.since < self.min_dwell_s:
            return None
        est = {n: e for n in self.names if (e := self.estimate_ms(n)) is not None}
        energy = {n: e for n in self.names if (e := self.splits[n].energy_mj) is not None}
        cands = [
            n
            for n in self.names
            if _has_measures(self.objective, est.get(n), energy.get(n))
            and self.eligible(n)
            and self.splits[n].samples >= self.min_samples
        ]
        if self.active in cands:
            if len(cands) < 2:
                return None
        elif self.eligible(self.active) or not cands:
            # The active one not measured yet (its estimate is a prior: at start-up a few
            # slow replies of a small payload make bytes / bandwidth say a picture takes a
            # second), or no estimate at all; an ineligible one is left for the best.
            return None
        est_c = {n: est.get(n, 0.0) for n in cands}
        energy_c = {n: energy.get(n, 0.0) for n in cands}
        cost = {n: self.cost(n, est_c, energy_c) for n in cands}
        best = min(cost, key=cost.__getitem__)
        if best == self.active:
            return None
        if self.active in cost and cost[best] > cost[self.active] * (1 - self.margin(best)):
            return None
        return Switch(
            old=self.active,
            new=best,
            estimates_ms={k: round(v, 3) for k, v in est.items()},
            reason=(
                f"objective={self.objective} queue_depth={self.queue_depth} "
                f"bandwidth_mbps={self.bandwidth_bps / 1e6:.2f}"
            ),
            energy_mj={k: round(v, 3) for k, v in energy.items()},
        )

    def margin(self, name: str) -> float:
        """How much better ``name`` must be than the active partition to be chosen.

        Twice the hysteresis while ``name`` is known only from probe frames: a probe runs
        alone, the active partition's frames share the window, the link and the server
        with each other, so a partition looks faster probed than it is once it runs
        (test_device_adaptive on a busy machine: the split probed at 15 ms beat the
        picture's 18, then ran at 31 and the daemon moved back a second later).
        """
        s = self.splits[name]
        if s.samples > 0 and s.run_samples == 0:
            return min(2 * self.hysteresis, 0.5)
        return self.hysteresis

    def switched(self, name: str, now: float) -> None:
        # The partition just left was measured up to now: its probe turn starts here, or
        # it would be probed on the very next frame (it never had a probe_frame).
        self.splits[self.active].probe_frame = self.frames
        self.active = name
        self.since = now


def manifest_accuracy(extra: dict | None) -> float | None:
    """The partition's top-1 accuracy recorded in its manifest's ``extra``, if any.

    ``extra.accuracy`` is a number, or the trainer's table (``val_top1_with_codec`` — the
    accuracy the board actually gets — else ``top1``); anything else is unknown (None).
    """
    acc = (extra or {}).get("accuracy")
    if isinstance(acc, dict):
        acc = acc.get("val_top1_with_codec", acc.get("top1"))
    if isinstance(acc, (int, float)) and not isinstance(acc, bool) and 0 <= acc <= 1:
        return float(acc)
    return None


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)
