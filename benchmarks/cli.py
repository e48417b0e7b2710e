"""Command line entry point for ``splitfit-bench``: one subcommand per benchmark module.

Each subcommand hands the remaining arguments to that module's own ``main(argv)``, so
``splitfit-bench codecs --help`` and ``python -m benchmarks.codecs --help`` are the same
thing; modules are imported only when their subcommand runs (torch/tensorflow are heavy).
"""

from __future__ import annotations

import importlib
import sys

from wire import exitcodes
from wire.logjson import setup_logging

# subcommand -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("benchmarks.demo", "end-to-end demo: simulated board + local tail server"),
    "e2e": ("benchmarks.e2e", "split vs cloud-only vs local over emulated 3G/4G/Wi-Fi links"),
    "codecs": ("benchmarks.codecs", "feature codec size/speed"),
    "power": ("benchmarks.power", "INA226 power sampling accuracy"),
    "capture": ("benchmarks.capture", "camera capture throughput"),
    "daemon": ("benchmarks.daemon", "device daemon throughput"),
    "converter": ("benchmarks.converter", "head conversion fidelity"),
    "server": ("benchmarks.server", "server throughput and latency (--backend local|ray)"),
    "accuracy_vs_bytes": ("benchmarks.accuracy_vs_bytes", "accuracy vs bytes/frame (Fig. 7)"),
    "bottlefit": ("benchmarks.bottlefit", "BottleFit training run summary"),
    "split_points": ("benchmarks.split_points", "int8 head cost + 3G energy per split point"),
    "frontier": ("benchmarks.frontier", "bytes, int8 head ms, held-out accuracy per trained split"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: splitfit-bench COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "`splitfit-bench COMMAND --help` shows a command's own options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return exitcodes.OK if argv else exitcodes.USAGE
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"splitfit-bench: unknown command {name!r}; known: {', '.join(COMMANDS)}",
              file=sys.stderr)  # fmt: skip
        return exitcodes.USAGE
    setup_logging("info")  # progress events of the benchmark (and the training it runs)
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
