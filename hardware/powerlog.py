"""Crash-safe append-only power log (CSV with a commented metadata header) and its reader.

Why this shape: a power log is most valuable exactly when something went wrong (the board
browned out, the process was killed), so the file must parse after any interruption.

- Append-only, opened ``O_APPEND``; every ``os.write`` ends at a line boundary, so nothing
  half-written sits in a user-space buffer and concurrent appenders (``power-log mark``)
  never interleave inside a line. After ``kill -9`` every line already written is in the
  page cache, i.e. on disk once the kernel flushes; ``fsync`` every ``fsync_interval_s``
  bounds what a power cut can lose.
- A reader tolerates a torn last line (power cut mid-write) and skips, but counts, anything
  it cannot parse.
- Size-based rotation: ``FILE`` → ``FILE.1`` → … → ``FILE.<backups>``; each file starts with
  its own header, so every file is self-describing.

Format (``splitfit-power-log/1``)::

    # splitfit-power-log/1
    # meta {"created_utc": ..., "clock": "monotonic", "source": {...}, ...}
    t,bus_v,shunt_v,current_a,power_w,flags
    1234.567890,5.03125,0.02950000,0.295000,1.484375,0
    # mark {"t": 1234.6, "name": "inference", ...}
    # gap {"t": 1234.7, "error": "INA226TransientError: ..."}

``t`` is ``time.monotonic()`` seconds (the same clock the daemon stamps inferences with);
``meta`` carries the wall-clock time of a monotonic instant so absolute times can be
recovered. A new ``meta`` line starts a new recording session (e.g. after a restart).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardware import rotation
from hardware.power import trapezoid_energy

__all__ = [
    "COLUMNS",
    "FORMAT",
    "PowerLog",
    "PowerLogError",
    "PowerLogWriter",
    "SegmentSummary",
    "append_mark",
    "read_power_log",
    "summarize",
]

FORMAT = "splitfit-power-log/1"
COLUMNS = ("t", "bus_v", "shunt_v", "current_a", "power_w", "flags")
HEADER_ROW = ",".join(COLUMNS)
FLAG_OVERFLOW = 1


class PowerLogError(Exception):
    """A power log that cannot be written or is not a power log at all."""


def _chunks(lines: Iterable[str], limit: int = 32768) -> Iterator[str]:
    """Join lines into chunks of at most ``limit`` characters that end at a line boundary."""
    buf: list[str] = []
    size = 0
    for line in lines:
        if buf and size + len(line) > limit:
            yield "".join(buf)
            buf, size = [], 0
        buf.append(line)
        size += len(line)
    if buf:
        yield "".join(buf)


def _event_line(kind: str, payload: dict[str, Any]) -> str:
    return f"# {kind} {json.dumps(payload, separators=(',', ':'), default=str)}\n"


class PowerLogWriter:
    """Appends samples, marks and gaps; fsyncs on an interval; rotates by size."""

    def __init__(
        self,
        path: str | Path,
        meta: dict[str, Any] | None = None,
        *,
        fsync_interval_s: float = 1.0,
        max_bytes: int = 64 * 1024 * 1024,
        backups: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (fsync_interval_s >= 0 and math.isfinite(fsync_interval_s)):
            raise PowerLogError(f"fsync_interval_s must be ≥ 0, got {fsync_interval_s!r}")
        if max_bytes < 4096:
            raise PowerLogError(f"max_bytes must be ≥ 4096, got {max_bytes!r}")
        if backups < 0:
            raise PowerLogError(f"backups must be ≥ 0, got {backups!r}")
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.fsync_interval_s = float(fsync_interval_s)
        self.max_bytes = int(max_bytes)
        self.backups = int(backups)
        self._clock = clock
        self._fd: int | None = None
        self._size = 0
        self._last_sync = clock()
        self._dirty = False
        self.rotations = 0
        self.samples_written = 0
        self._open(new_session=True)

    # -- file handling ---------------------------------------------------------------

    def _open(self, new_session: bool) -> None:
        if not self.path.parent.is_dir():
            raise PowerLogError(f"directory {self.path.parent} does not exist")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PowerLogError(f"cannot open {self.path}: {exc.strerror}") from exc
        self._fd = fd
        self._size = os.fstat(fd).st_size
        if self._size == 0:
            self._write_raw(f"# {FORMAT}\n")
        if self._size == 0 or new_session or self.rotations:
            meta = {
                "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "clock": "monotonic",
                "monotonic_at": round(self._clock(), 6),
                "unix_at": round(time.time(), 6),
                "part": self.rotations,
                **self.meta,
            }
            self._write_raw(_event_line("meta", meta) + HEADER_ROW + "\n")
        self.sync()

    def _write_raw(self, text: str) -> None:
        assert self._fd is not None, "power log is closed"
        data = text.encode()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self._dirty = True

    def _rotate(self) -> None:
        self.sync()
        assert self._fd is not None
        os.close(self._fd)
        self._fd = None
        rotation.rotate(self.path, self.backups)
        self.rotations += 1
        self._open(new_session=False)

    def _append_lines(self, lines: Iterable[str]) -> None:
        for chunk in _chunks(lines):
            if rotation.due(self._size, len(chunk), self.max_bytes):
                self._rotate()
            self._write_raw(chunk)
        self.maybe_sync()

    # -- public ----------------------------------------------------------------------

    def write_sample(
        self,
        t: float,
        bus_v: float,
        shunt_v: float,
        current_a: float,
        power_w: float,
        flags: int = 0,
    ) -> None:
        self.write_arrays(
            {
                "t": [t],
                "bus_v": [bus_v],
                "shunt_v": [shunt_v],
                "current_a": [current_a],
                "power_w": [power_w],
                "flags": [flags],
            }
        )

    def write_arrays(self, cols: dict[str, Any]) -> None:
        """Append many samples (columns as in :meth:`PowerSampler.arrays`) in few writes."""
        t = cols["t"]
        n = len(t)
        if n == 0:
            self.maybe_sync()
            return
        b, s, c, p = cols["bus_v"], cols["shunt_v"], cols["current_a"], cols["power_w"]
        f = cols.get("flags", [0] * n)
        lines = [
            f"{t[k]:.6f},{b[k]:.5f},{s[k]:.8f},{c[k]:.6f},{p[k]:.6f},{int(f[k])}\n"
            for k in range(n)
        ]
        self._append_lines(lines)
        self.samples_written += n

    def mark(self, name: str, t: float | None = None, **info: Any) -> None:
        """Start a named segment at ``t`` (default now); summaries report per segment."""
        if not name or "\n" in name:
            raise PowerLogError(f"mark name must be a non-empty single line, got {name!r}")
        payload = {"t": round(self._clock() if t is None else t, 6), "name": name, **info}
        self._append_lines([_event_line("mark", payload)])

    def gap(self, t: float, error: str, count: int = 1, t_last: float | None = None) -> None:
        """Record samples that could not be taken (after the reader's retries).

        ``count`` > 1 coalesces a run of identical failures into one line (a chip that fell
        off the bus must not flood the log at the sampling rate).
        """
        payload: dict[str, Any] = {"t": round(t, 6), "error": error[:300]}
        if count != 1:
            payload["count"] = int(count)
        if t_last is not None and t_last != t:
            payload["t_last"] = round(t_last, 6)
        self._append_lines([_event_line("gap", payload)])

    def maybe_sync(self) -> None:
        if self._dirty and self._clock() - self._last_sync >= self.fsync_interval_s:
            self.sync()

    def sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
        self._dirty = False
        self._last_sync = self._clock()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.sync()
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PowerLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SamplerDrain:
    """Moves what a running ``PowerSampler`` stored since the last call into a log.

    Shared by ``power-log record`` and the device daemon's optional power log, so both write
    the same samples and the same coalesced gap lines. Call it periodically (well within the
    sampler's ring capacity); samples overwritten before a call are logged as one gap.
    """

    def __init__(self, sampler: Any, writer: PowerLogWriter) -> None:
        self.sampler = sampler
        self.writer = writer
        self._seq = 0
        self._gap_seq = 0

    def __call__(self) -> None:
        self._seq, cols, lost = self.sampler.since(self._seq)
        self.writer.write_arrays(cols)
        if lost:
            self.writer.gap(time.monotonic(), f"{lost} samples overwritten before they were logged")
        self._gap_seq, events = self.sampler.gap_events_since(self._gap_seq)
        run: list[Any] = []  # coalesce consecutive identical failures into one line
        for e in [*events, None]:
            if run and (e is None or e.error != run[0].error):
                self.writer.gap(run[0].t, run[0].error, count=len(run), t_last=run[-1].t)
                run = []
            if e is not None:
                run.append(e)


def append_mark(path: str | Path, name: str, t: float | None = None, **info: Any) -> None:
    """Append one mark line to an existing log from another process (O_APPEND, one write)."""
    p = Path(path)
    if not p.is_file():
        raise PowerLogError(f"{p} does not exist")
    payload = {"t": round(time.monotonic() if t is None else t, 6), "name": name, **info}
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, _event_line("mark", payload).encode())
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading


@dataclass
class PowerLog:
    """A parsed log: sample columns as numpy arrays plus the comment events.

    ``session`` numbers each sample's recording session (a recorder start; rotation parts
    continue a session). Within a session ``t`` is increasing; across sessions the
    monotonic clock may restart (reboot), so per-session analysis never mixes them.
    """

    path: Path
    t: np.ndarray
    bus_v: np.ndarray
    shunt_v: np.ndarray
    current_a: np.ndarray
    power_w: np.ndarray
    flags: np.ndarray
    session: np.ndarray
    metas: list[dict[str, Any]] = field(default_factory=list)
    marks: list[dict[str, Any]] = field(default_factory=list)  # each has "session"
    gaps: list[dict[str, Any]] = field(default_factory=list)  # each has "session"
    bad_lines: int = 0  # unparseable complete lines (skipped)
    torn_tail: bool = False  # the last line had no newline (interrupted write), ignored

    def __len__(self) -> int:
        return len(self.t)

    @property
    def sessions(self) -> list[int]:
        return sorted({int(x) for x in self.session})


class _Parser:
    """Streams a log: comment events one by one, sample lines in bulk batches.

    Sample lines are checked cheaply (five commas) and converted 64k at a time by numpy's C
    parser, so a 50 MB file parses in seconds with bounded memory; a batch that numpy
    rejects is re-parsed line by line so one bad line costs only itself.
    """

    BATCH = 65536

    def __init__(self, log: PowerLog) -> None:
        self.log = log
        self.arrays: list[np.ndarray] = []
        self.session_of: list[np.ndarray] = []
        self.batch: list[str] = []
        self.current = -1

    def feed(self, fh: Iterable[str]) -> None:
        log = self.log
        batch = self.batch
        for line in fh:
            if not line.endswith("\n"):
                log.torn_tail = True  # an interrupted write: drop the fragment
                break
            first = line[:1]
            if first == "#":
                self._comment(line[1:].strip())
                continue
            if first == "t" and line.startswith("t,"):
                continue
            if line.count(",") != 5:
                if line.strip():
                    log.bad_lines += 1
                continue
            batch.append(line)
            if len(batch) >= self.BATCH:
                self.flush()
        self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        try:
            arr = np.loadtxt(self.batch, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError:
            rows = []
            for line in self.batch:
                try:
                    rows.append([float(x) for x in line.split(",")])
                except ValueError:
                    self.log.bad_lines += 1
            arr = np.asarray(rows, dtype=np.float64).reshape(-1, len(COLUMNS))
        ok = np.all(np.isfinite(arr), axis=1)
        self.log.bad_lines += int(len(arr) - np.count_nonzero(ok))
        arr = arr[ok]
        self.arrays.append(arr)
        self.session_of.append(np.full(len(arr), max(0, self.current), dtype=np.int64))
        self.batch.clear()

    def _comment(self, body: str) -> None:
        log = self.log
        kind, _, rest = body.partition(" ")
        if kind not in ("meta", "mark", "gap"):
            return  # the format line or a free comment
        try:
            payload = json.loads(rest)
        except json.JSONDecodeError:
            log.bad_lines += 1
            return
        if not isinstance(payload, dict):
            log.bad_lines += 1
            return
        if kind == "meta":
            if not payload.get("part"):
                self.flush()  # samples so far belong to the previous session
                self.current += 1  # part > 0 is a rotation continuing the same session
            log.metas.append(payload)
            return
        try:
            payload["t"] = float(payload["t"])
        except (KeyError, TypeError, ValueError):
            log.bad_lines += 1
            return
        payload["session"] = max(0, self.current)
        (log.marks if kind == "mark" else log.gaps).append(payload)


def read_power_log(*paths: str | Path) -> PowerLog:
    """Parse one or more log files, oldest first (e.g. ``FILE.2 FILE.1 FILE``)."""
    if not paths:
        raise PowerLogError("no power log given")
    log = PowerLog(Path(paths[-1]), *(np.zeros(0) for _ in range(7)))
    parser = _Parser(log)
    for path in paths:
        p = Path(path)
        try:
            with p.open("r", encoding="utf-8", errors="replace", newline="\n") as fh:
                first = fh.readline()
                if first and first.rstrip("\n") != f"# {FORMAT}":
                    raise PowerLogError(f"{p} is not a {FORMAT} file")
                fh.seek(0)
                parser.feed(fh)
        except FileNotFoundError:
            raise PowerLogError(f"{p} does not exist") from None
        except IsADirectoryError:
            raise PowerLogError(f"{p} is a directory") from None
        except OSError as exc:
            raise PowerLogError(f"cannot read {p}: {exc.strerror}") from exc
    if parser.arrays:
        arr = np.concatenate(parser.arrays)
        ses = np.concatenate(parser.session_of)
        order = np.lexsort((arr[:, 0], ses))  # by session, then time within it
        arr, ses = arr[order], ses[order]
        log.t, log.bus_v, log.shunt_v, log.current_a, log.power_w = (
            np.ascontiguousarray(arr[:, k]) for k in range(5)
        )
        log.flags = arr[:, 5].astype(np.int64)
        log.session = ses
    else:
        log.flags = np.zeros(0, dtype=np.int64)
        log.session = np.zeros(0, dtype=np.int64)
    log.marks.sort(key=lambda m: (m["session"], m["t"]))
    return log


@dataclass(frozen=True)
class SegmentSummary:
    """What ``power-log summary`` prints per segment (and for the whole log)."""

    name: str
    session: int
    t0: float
    t1: float
    duration_s: float
    samples: int
    gaps: int
    mean_power_w: float
    peak_power_w: float
    energy_j: float
    overflow: int

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in vars(self).items()
        }


def _gap_count(g: dict[str, Any]) -> int:
    try:
        return max(1, int(g.get("count", 1)))
    except (TypeError, ValueError):
        return 1


def _segment(
    log: PowerLog, sl: slice, name: str, session: int, t0: float, t1: float, closed: bool
) -> SegmentSummary:
    t, pw = log.t[sl], log.power_w[sl]
    lo = int(np.searchsorted(t, t0, side="left"))
    hi = int(np.searchsorted(t, t1, side="right" if closed else "left"))
    p = pw[lo:hi]
    end_tol = 1e-9 if closed else 0.0
    gaps = sum(
        _gap_count(g) for g in log.gaps if g["session"] == session and t0 <= g["t"] < t1 + end_tol
    )
    # integrate the whole [t0, t1], interpolating from the samples just outside it
    lo_e, hi_e = max(0, lo - 1), min(len(t), hi + 1)
    energy = trapezoid_energy(t[lo_e:hi_e], pw[lo_e:hi_e], t0, t1)
    dur = t1 - t0
    return SegmentSummary(
        name=name,
        session=session,
        t0=t0,
        t1=t1,
        duration_s=dur,
        samples=int(hi - lo),
        gaps=gaps,
        mean_power_w=energy / dur if dur > 0 else (float(p.mean()) if len(p) else math.nan),
        peak_power_w=float(p.max()) if len(p) else math.nan,
        energy_j=energy,
        overflow=int(np.count_nonzero(log.flags[sl][lo:hi] & FLAG_OVERFLOW)),
    )


def summarize(log: PowerLog) -> tuple[SegmentSummary, list[SegmentSummary]]:
    """Whole-log totals and one summary per segment.

    Marks split a session: each segment runs from its mark to the next mark or the end of the
    session; samples before the first mark form segment "(start)". Sessions never share a
    segment (the clock may have restarted between them), and totals add up the sessions.
    """
    per: list[SegmentSummary] = []
    sessions: list[SegmentSummary] = []
    for ses in log.sessions:
        idx = np.flatnonzero(log.session == ses)
        sl = slice(int(idx[0]), int(idx[-1]) + 1)
        t = log.t[sl]
        first, last = float(t[0]), float(t[-1])
        cuts = [(first, "(start)")]
        for m in log.marks:
            # a mark written just before the session's first sample starts at that sample
            if m["session"] == ses and m["t"] <= last:
                cuts.append((max(first, m["t"]), str(m.get("name", "?"))))
        cuts.sort(key=lambda c: c[0])
        if len(cuts) > 1 and cuts[1][0] <= first:
            cuts.pop(0)  # a mark at the very first sample replaces "(start)"
        for k, (t0, name) in enumerate(cuts):
            is_last = k + 1 == len(cuts)
            t1 = last if is_last else cuts[k + 1][0]
            per.append(_segment(log, sl, name, ses, t0, t1, closed=is_last))
        sessions.append(_segment(log, sl, "(session)", ses, first, last, closed=True))
    if not sessions:
        nan = math.nan
        gaps = sum(_gap_count(g) for g in log.gaps)
        return SegmentSummary("(all)", -1, nan, nan, 0.0, 0, gaps, nan, nan, 0.0, 0), []
    energy = sum(s.energy_j for s in sessions)
    duration = sum(s.duration_s for s in sessions)
    peaks = [s.peak_power_w for s in sessions if not math.isnan(s.peak_power_w)]
    total = SegmentSummary(
        name="(all)",
        session=-1,
        t0=sessions[0].t0,
        t1=sessions[-1].t1,
        duration_s=duration,
        samples=sum(s.samples for s in sessions),
        gaps=sum(_gap_count(g) for g in log.gaps),
        mean_power_w=energy / duration if duration > 0 else math.nan,
        peak_power_w=max(peaks) if peaks else math.nan,
        energy_j=energy,
        overflow=sum(s.overflow for s in sessions),
    )
    return total, per
