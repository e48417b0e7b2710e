"""Command line entry point for ``splitfit-train``.

Placeholder until issue 10 lands: it documents itself and refuses to pretend to work.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="splitfit-train",
        description="Train bottlenecked split models (BottleNet, BottleFit, BottleNet++, search).",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    print("splitfit-train: not implemented yet (tracked in issue 10)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
