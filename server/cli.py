"""Command line entry point for ``splitfit-server``.

Placeholder until issue 8 lands: it documents itself and refuses to pretend to work.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="splitfit-server",
        description="Run the tail server: ZeroMQ ROUTER, decode, batching, torch tail.",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    print("splitfit-server: not implemented yet (tracked in issue 8)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
