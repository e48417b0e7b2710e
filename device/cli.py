"""Command line entry point for ``splitfit-device``.

``splitfit-device --config device.toml [--frames N] [--summary run.json]``

Exit codes: 0 after a clean stop (SIGTERM/SIGINT, ``--frames`` reached, end of a finite
input); 2 for a bad config or head (one line on stderr naming the problem, no traceback);
1 when the pipeline dies at run time.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from device.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="splitfit-device",
        description="Run the board daemon: capture, int8 head, codec, ZeroMQ to the tail server.",
    )
    p.add_argument("--config", required=True, type=Path, help="device.toml")
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="stop after N frames went through the head (overrides device.max_frames)",
    )
    p.add_argument(
        "--summary",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the run summary JSON here at exit (overrides device.summary_path)",
    )
    p.add_argument(
        "--check", action="store_true", help="validate the config and load the heads, then exit"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames is not None and args.frames < 0:
        print("splitfit-device: --frames must be >= 0", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"splitfit-device: config error: {exc}", file=sys.stderr)
        return 2
    # Imported here so that `--help` and config errors stay fast on a small board.
    from device.daemon import Daemon
    from device.head import HeadError
    from hardware.camera import CameraError
    from wire.errors import CodecError

    try:
        daemon = Daemon(cfg, max_frames=args.frames, summary_path=args.summary)
    except (HeadError, CameraError, CodecError, ConfigError, OSError, ValueError) as exc:
        print(f"splitfit-device: cannot start: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"splitfit-device: config OK ({len(cfg.heads)} head(s))", file=sys.stderr)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
