"""Command line entry point for ``splitfit-train`` (subcommands in ``training.commands``)."""

from __future__ import annotations

import argparse
import importlib
import sys

from training.commands import COMMAND_MODULES
from wire import exitcodes
from wire.logjson import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitfit-train",
        description="Train bottlenecked split models (BottleNet, BottleFit, BottleNet++, search).",
    )
    parser.add_argument("--list-models", action="store_true", help="print backbone names and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for path in COMMAND_MODULES:
        mod = importlib.import_module(path)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        from training.models import create_model, list_models

        for name in list_models():
            print(name, " ".join(create_model(name).split_points()))
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return exitcodes.USAGE
    setup_logging("info")  # progress events (epoch, search_baseline, ...) as JSON lines
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("splitfit-train: interrupted", file=sys.stderr)
        return exitcodes.INTERRUPTED
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as exc:
        # CodecError and ManifestError are ValueErrors; DatasetMissing is a FileNotFoundError.
        print(f"splitfit-train {args.command}: error: {exc}", file=sys.stderr)
        return _exit_code(exc)


def _exit_code(exc: Exception) -> int:
    """wire.exitcodes: a missing file or dataset is 3, a bad option or value 2, else 1."""
    if isinstance(exc, FileNotFoundError):
        return exitcodes.BAD_INPUT
    if isinstance(exc, ValueError):
        return exitcodes.USAGE
    return exitcodes.FAILURE


if __name__ == "__main__":
    sys.exit(main())
