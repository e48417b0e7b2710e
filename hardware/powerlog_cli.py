"""``power-log``: record an INA226 to a crash-safe log, and show / summarise / plot / mark it.

    power-log record --bus 1 --address 0x40 --shunt-ohms 0.01 --max-current 5 --out power.csv
    power-log record --sim --out power.csv --duration 10 --rate 1000
    power-log show power.csv [--follow]
    power-log summary power.csv.1 power.csv [--json]
    power-log plot power.csv -o trace.png
    power-log mark power.csv "benchmark-start"

``record`` logs one-line JSON to stderr (start, periodic stats, stop) through the project's
one logging setup (``wire.logjson``); SIGTERM/SIGINT stop it cleanly (final drain + fsync).
Errors are one line on stderr, ``power-log: error: …``, and an exit status from
``wire.exitcodes``: 1 the monitor failed (no I2C bus, no chip), 2 bad options (a shunt that
cannot measure the asked current, exclusive flags), 3 a power log that is missing, empty or
not a power log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from wire import exitcodes
from wire.atomicfile import write_atomic
from wire.logjson import get_logger, setup_logging

__all__ = ["build_parser", "main"]

PROG = "power-log"


log = get_logger(__name__)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status ``code`` (wire.exitcodes)."""

    def __init__(self, message: str, code: int = exitcodes.FAILURE) -> None:
        super().__init__(message)
        self.code = code


def _int_auto(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (v > 0 and math.isfinite(v)):
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG, description="Record, show, summarise and plot INA226 power logs."
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rec = sub.add_parser("record", help="sample an INA226 (or the simulator) into a log file")
    rec.add_argument("--out", required=True, type=Path, help="log file (appended to)")
    rec.add_argument("--bus", type=_int_auto, default=1, help="I2C bus number (/dev/i2c-N)")
    rec.add_argument("--address", type=_int_auto, default=0x40, help="7-bit address, e.g. 0x40")
    rec.add_argument("--shunt-ohms", type=_positive(float), default=0.1)
    rec.add_argument(
        "--max-current",
        type=_positive(float),
        default=None,
        help="largest expected current in A (default: the shunt's full 81.92 mV range)",
    )
    rec.add_argument("--rate", type=_positive(float), default=100.0, help="samples per second")
    rec.add_argument("--duration", type=_positive(float), default=None, help="seconds, else ∞")
    rec.add_argument("--averaging", type=int, default=None, help="pin ADC averaging (1..1024)")
    rec.add_argument("--bus-conv-us", type=int, default=None, help="pin bus conversion time")
    rec.add_argument("--shunt-conv-us", type=int, default=None, help="pin shunt conversion time")
    rec.add_argument("--fsync-interval", type=float, default=1.0, help="seconds between fsyncs")
    rec.add_argument("--max-bytes", type=_int_auto, default=64 * 1024 * 1024, help="rotate size")
    rec.add_argument("--backups", type=int, default=5, help="rotated files kept")
    rec.add_argument("--mark-every", type=_positive(float), default=None, help="segment marks")
    rec.add_argument("--stats-every", type=_positive(float), default=60.0, help="stats log line")
    rec.add_argument("--capacity", type=int, default=65536, help="sampler ring buffer size")
    rec.add_argument(
        "--hwmon",
        metavar="NAME|PATH",
        default=None,
        help="read the kernel ina2xx driver's sysfs (e.g. ina226, ina226@1-0040) instead of I2C",
    )
    sim = rec.add_argument_group("simulator (--sim)")
    sim.add_argument("--sim", action="store_true", help="simulated INA226 on a fake SMBus")
    sim.add_argument("--sim-idle-w", type=_positive(float), default=1.5)
    sim.add_argument("--sim-busy-w", type=_positive(float), default=3.5)
    sim.add_argument("--sim-noise-w", type=float, default=0.1)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--sim-error-rate",
        type=float,
        default=0.0,
        help="probability that a simulated I2C transfer fails with a NACK (robustness demo)",
    )

    show = sub.add_parser("show", help="print the last samples (and follow)")
    show.add_argument("file", type=Path)
    show.add_argument("-n", "--lines", type=int, default=20)
    show.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")

    summ = sub.add_parser("summary", help="duration, samples, gaps, power, energy per segment")
    summ.add_argument("files", type=Path, nargs="+", help="oldest first, e.g. F.2 F.1 F")
    summ.add_argument("--json", action="store_true", help="machine-readable output")

    plot = sub.add_parser("plot", help="power trace PNG (needs matplotlib: splitfit[plot])")
    plot.add_argument("files", type=Path, nargs="+")
    plot.add_argument("-o", "--output", type=Path, required=True)

    mark = sub.add_parser("mark", help="append a segment mark to a log (now)")
    mark.add_argument("file", type=Path)
    mark.add_argument("name")
    return ap


# --------------------------------------------------------------------------- record


class _Stop:
    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        self.requested = True
        self.signal = signal.Signals(signum).name


def _record(args: argparse.Namespace) -> int:
    from hardware.monitor import open_power_monitor
    from hardware.power import PowerSampler
    from hardware.powerlog import PowerLogWriter, SamplerDrain
    from hardware.sim import simulated_load_of

    params: dict[str, Any] = {
        "address": args.address,
        "shunt_ohms": args.shunt_ohms,
        "max_current_a": args.max_current,
    }
    for key in ("averaging", "bus_conv_us", "shunt_conv_us"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    if args.sim and args.hwmon is not None:
        raise CliError("--sim and --hwmon are exclusive", exitcodes.USAGE)
    if args.sim:
        params.update(
            idle_w=args.sim_idle_w,
            busy_w=args.sim_busy_w,
            noise_w=args.sim_noise_w,
            seed=args.seed,
        )
        reader = open_power_monitor("sim", **params)
        source = {"kind": "sim", "bus": "sim", **params}
        if args.sim_error_rate:
            reader.bus.set_error_rate(args.sim_error_rate, seed=args.seed)  # type: ignore[union-attr]
            source["error_rate"] = args.sim_error_rate
    elif args.hwmon is not None:
        reader = open_power_monitor("hwmon", path_or_name=args.hwmon)
        source = {"kind": "hwmon", "path": str(getattr(reader, "path", args.hwmon))}
    else:
        reader = open_power_monitor("ina226", bus=args.bus, **params)
        source = {"kind": "ina226", "bus": args.bus, **params}
    assert reader is not None
    sampler = PowerSampler(reader, rate_hz=args.rate, capacity=args.capacity)
    timing = getattr(reader, "timing", None)
    cal = getattr(reader, "calibration", None)
    meta = {
        "source": source,
        "rate_hz": args.rate,
        "timing": None
        if timing is None
        else {
            "averaging": timing.averaging,
            "bus_conv_us": timing.bus_conv_us,
            "shunt_conv_us": timing.shunt_conv_us,
            "mode": timing.mode.name.lower(),
            "cycle_s": timing.cycle_s,
        },
        "calibration": None if cal is None else vars(cal),
        "pid": os.getpid(),
    }
    try:
        writer = PowerLogWriter(
            args.out,
            meta,
            fsync_interval_s=args.fsync_interval,
            max_bytes=args.max_bytes,
            backups=args.backups,
        )
    except Exception:
        close = getattr(reader, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        raise
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    load = simulated_load_of(reader)
    drain_s = max(0.02, min(0.1, args.fsync_interval / 2 if args.fsync_interval else 0.1))
    marks = 0
    scripted_until = time.monotonic()
    t_start = time.monotonic()
    t_end = math.inf if args.duration is None else t_start + args.duration
    next_mark = t_start if args.mark_every else math.inf
    next_stats = t_start + args.stats_every
    log.info("start", out=str(args.out), source=source, rate_hz=args.rate, timing=meta["timing"])

    drain = SamplerDrain(sampler, writer)

    try:
        if load is not None:  # stand-in for a daemon: random inference-like bursts
            scripted_until = t_start + 1.0
            load.script_bursts(t_start, scripted_until, seed=args.seed + 1)
        sampler.start()
        while not stop.requested:
            now = time.monotonic()
            if now >= t_end:
                break
            if load is not None and scripted_until - now < 0.5:
                load.script_bursts(scripted_until, scripted_until + 1.0, seed=None)
                scripted_until += 1.0
            if now >= next_mark:
                writer.mark(f"segment-{marks}", t=next_mark)
                marks += 1
                next_mark += args.mark_every
            drain()
            writer.maybe_sync()
            if now >= next_stats:
                log.info("stats", **vars(sampler.stats()))
                next_stats += args.stats_every
            time.sleep(min(drain_s, max(0.0, t_end - time.monotonic())))
    finally:
        sampler.stop()
        with contextlib.suppress(Exception):
            drain()
        writer.close()
        close = getattr(reader, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
    st = sampler.stats()
    log.info("stop", reason=stop.signal or "duration", written=writer.samples_written, **vars(st))
    return 0


# --------------------------------------------------------------------------- show


def _format_line(line: str) -> str | None:
    """Human-readable rendering of one log line (None for headers)."""
    if line.startswith("#"):
        body = line[1:].strip()
        kind, _, rest = body.partition(" ")
        if kind in ("mark", "gap", "meta"):
            return f"-- {kind}: {rest}"
        return None
    if line.startswith("t,") or not line.strip():
        return None
    parts = line.split(",")
    if len(parts) != 6:
        return f"?? {line}"
    try:
        t, bus, _shunt, cur, pw, fl = (float(x) for x in parts)
    except ValueError:
        return f"?? {line}"
    flag = "  OVERFLOW" if int(fl) & 1 else ""
    return f"{t:14.6f}  {bus:7.4f} V  {cur * 1e3:9.3f} mA  {pw:8.4f} W{flag}"


def _show(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"{path} does not exist", exitcodes.BAD_INPUT)
    fh = path.open("rb")
    try:
        data = fh.read()
        text = data.decode("utf-8", errors="replace")
        complete, _, pending = text.rpartition("\n")
        shown = [s for s in (_format_line(x) for x in complete.split("\n")) if s is not None]
        for s in shown[-args.lines :] if args.lines > 0 else []:
            print(s)
        sys.stdout.flush()
        if not args.follow:
            return 0
        stop = _Stop()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stop.requested:
            # like `tail -F`: drain the open file first, then notice a rotation and reopen
            chunk = fh.read()
            if chunk:
                pending += chunk.decode("utf-8", errors="replace")
                *lines, pending = pending.split("\n")
                for line in lines:
                    out = _format_line(line)
                    if out is not None:
                        print(out, flush=True)
                continue
            try:
                rotated = os.stat(path).st_ino != os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                rotated = False  # mid-rotation: the new file is not there yet
            if rotated:
                fh.close()
                fh = path.open("rb")
                pending = ""
                continue
            time.sleep(0.2)
        return 0
    finally:
        fh.close()


# --------------------------------------------------------------------------- summary


def _summary(args: argparse.Namespace) -> int:
    from hardware.powerlog import read_power_log, summarize

    log = read_power_log(*args.files)
    total, segments = summarize(log)
    if args.json:
        out = {
            "files": [str(f) for f in args.files],
            "total": total.as_dict(),
            "segments": [s.as_dict() for s in segments],
            "bad_lines": log.bad_lines,
            "torn_tail": log.torn_tail,
        }
        print(json.dumps(out, indent=2))
        return 0

    def row(s: Any) -> str:
        def f(v: float, spec: str) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

        return (
            f"{s.name[:24]:<24} {f(s.duration_s, '10.3f')} {s.samples:>9} {s.gaps:>5} "
            f"{f(s.mean_power_w, '9.4f')} {f(s.peak_power_w, '9.4f')} {f(s.energy_j, '11.4f')}"
        )

    head = (
        f"{'segment':<24} {'duration_s':>10} {'samples':>9} {'gaps':>5} "
        f"{'mean_W':>9} {'peak_W':>9} {'energy_J':>11}"
    )
    print(head)
    print("-" * len(head))
    for s in segments:
        print(row(s))
    print("-" * len(head))
    print(row(total))
    notes = []
    if total.overflow:
        notes.append(f"{total.overflow} samples flagged math overflow")
    if log.bad_lines:
        notes.append(f"{log.bad_lines} unparseable lines skipped")
    if log.torn_tail:
        notes.append("last line was cut short (interrupted write), ignored")
    for n in notes:
        print(f"note: {n}")
    return 0


# --------------------------------------------------------------------------- plot


def _plot(args: argparse.Namespace) -> int:
    from hardware.powerlog import read_power_log, summarize

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("plot needs matplotlib: pip install 'splitfit[plot]'") from None
    log = read_power_log(*args.files)
    if len(log) == 0:
        raise CliError(f"{args.files[-1]} holds no samples", exitcodes.BAD_INPUT)
    total, _ = summarize(log)
    fig, ax = plt.subplots(figsize=(11, 4), dpi=110)
    offset = 0.0
    for ses in log.sessions:
        m = log.session == ses
        t = log.t[m]
        x = t - t[0] + offset
        ax.plot(x, log.power_w[m], lw=0.7, color="tab:blue", label="power" if ses == 0 else None)
        for mk in log.marks:
            if mk["session"] == ses and t[0] <= mk["t"] <= t[-1]:
                xm = mk["t"] - t[0] + offset
                ax.axvline(xm, color="tab:gray", lw=0.6, ls="--")
                ax.text(
                    xm,
                    1.0,
                    str(mk.get("name", "")),
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize=6,
                    transform=ax.get_xaxis_transform(),
                )
        gx = [g["t"] - t[0] + offset for g in log.gaps if g["session"] == ses]
        if gx:
            ax.plot(gx, [0] * len(gx), "rx", label="gap" if ses == 0 else None)
        offset = x[-1] + 0.001
    ax.set_xlabel("time since start of recording (s)")
    ax.set_ylabel("power (W)")
    ax.set_title(
        f"{args.files[-1].name}: {total.samples} samples, {total.duration_s:.2f} s, "
        f"mean {total.mean_power_w:.3f} W, peak {total.peak_power_w:.3f} W, "
        f"{total.energy_j:.3f} J"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out: Path = args.output
    try:
        write_atomic(out, fig.savefig)
    finally:
        plt.close(fig)
    print(out)
    return 0


def _mark(args: argparse.Namespace) -> int:
    from hardware.powerlog import append_mark

    append_mark(args.file, args.name)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "record":
        setup_logging("info")  # record runs as a service: its progress is JSON lines
    from hardware.ina226 import INA226ConfigError, INA226Error
    from hardware.powerlog import PowerLogError

    handlers = {
        "record": _record,
        "show": _show,
        "summary": _summary,
        "plot": _plot,
        "mark": _mark,
    }
    try:
        return handlers[args.command](args)
    except BrokenPipeError:  # `power-log show ... | head`
        return 0
    except KeyboardInterrupt:  # Ctrl-C during summary/plot of a big log
        print(f"{PROG}: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED
    except (CliError, INA226Error, PowerLogError, ValueError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return _exit_code(exc, INA226ConfigError, INA226Error, PowerLogError)


def _exit_code(exc: BaseException, config_error: type, monitor_error: type, log_error: type) -> int:
    """Which row of wire.exitcodes an error is (the error types are imported lazily)."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, config_error):  # the options describe a setup the chip cannot measure
        return exitcodes.USAGE
    if isinstance(exc, (monitor_error, OSError)):  # no bus, no chip, I/O failure
        return exitcodes.FAILURE
    if isinstance(exc, log_error):  # not a power log, or a path that is not there
        return exitcodes.BAD_INPUT
    return exitcodes.USAGE  # ValueError: a bad option value


if __name__ == "__main__":
    sys.exit(main())
