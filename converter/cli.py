"""Command line entry point for ``convert-head``.

Placeholder until issue 12 lands: it documents itself and refuses to pretend to work.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="convert-head",
        description="Convert a trained PyTorch head to a full-int8 TFLite model plus manifest.",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    print("convert-head: not implemented yet (tracked in issue 12)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
