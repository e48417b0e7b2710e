"""Command line entry point for ``splitfit-bench``.

Placeholder until issue 13 lands: it documents itself and refuses to pretend to work.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="splitfit-bench",
        description="Run splitfit benchmarks and write results under benchmarks/results/.",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    print("splitfit-bench: not implemented yet (tracked in issue 13)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
