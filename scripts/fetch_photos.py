#!/usr/bin/env python3
"""Fetch the Debian photo corpus into vendor/photos (``make photos``; not part of demo/test).

Downloads 11 bookworm packages with ``apt-get download`` into ``vendor/debs`` (no root;
about 600 MB), extracts each with ``dpkg-deb -x``, keeps the real photos (including those
inside GCompris' Qt .rcc bundles) and writes them with a per-file licence manifest to
``vendor/photos/manifest.json``. Idempotent: packages already built at the same version are
skipped. See training/data/debian_corpus.py and docs/data.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data.debian_corpus import PACKAGE_NAMES, CorpusError, build_corpus, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vendor", type=Path, default=Path("vendor"), help="default: ./vendor")
    ap.add_argument(
        "--packages", nargs="+", default=list(PACKAGE_NAMES), metavar="PKG",
        help="a subset of the 11 packages (default: all)",
    )  # fmt: skip
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    def progress(it):
        return tqdm(it, desc="photo packages", unit="pkg", disable=args.no_progress)

    t0 = time.perf_counter()
    try:
        manifest = build_corpus(args.vendor, tuple(args.packages), progress)
    except (CorpusError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for package, kinds in counts(manifest).items():
        print(f"{package:30s} {kinds['scene']:4d} scenes {kinds['cutout']:4d} cut-outs")
    print(
        f"{manifest['count']} photos in {args.vendor / 'photos'} "
        f"({time.perf_counter() - t0:.0f} s); manifest: {args.vendor / 'photos' / 'manifest.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
