"""Command line entry point for ``splitfit-device``.

Placeholder until issue 7 lands: it documents itself and refuses to pretend to work.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="splitfit-device",
        description="Run the board daemon: capture, int8 head, codec, ZeroMQ to the tail server.",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    print("splitfit-device: not implemented yet (tracked in issue 7)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
