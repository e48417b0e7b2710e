"""Command line entry point for ``power-log``.

Placeholder until issue 5 lands: it documents itself and refuses to pretend to work.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="power-log", description="Record, show, summarise and plot INA226 power logs."
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    print("power-log: not implemented yet (tracked in issue 5)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
