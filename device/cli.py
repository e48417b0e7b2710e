"""Command line entry point for ``splitfit-device``.

``splitfit-device --config device.toml [--frames N] [--summary run.json]``

Exit codes (``wire.exitcodes``, the same for every splitfit tool): 0 after a clean stop
(SIGTERM/SIGINT, ``--frames`` reached, end of a finite input); 2 for a bad command line or
config; 3 for a head, manifest or camera input that is missing or invalid; 1 when the
pipeline dies at run time. Every stderr line is one JSON object (``wire.logjson``), the
fatal ones included: journald keeps one record per line and an operator greps ``event``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from device.config import ConfigError, load_config
from wire import exitcodes
from wire.logjson import get_logger, setup_logging

log = get_logger(__name__)


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
    setup_logging("info")  # the config's level applies once it is read (Daemon._build)
    if args.frames is not None and args.frames < 0:
        log.error("usage_error", "--frames must be >= 0", frames=args.frames)
        return exitcodes.USAGE
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        log.error("config_error", f"config error: {exc}", config=str(args.config))
        return exitcodes.USAGE
    # Imported here so that `--help` and config errors stay fast on a small board.
    from device.daemon import Daemon
    from device.head import HeadError
    from hardware.camera import CameraError
    from wire.errors import CodecError

    try:
        daemon = Daemon(cfg, max_frames=args.frames, summary_path=args.summary)
    except (HeadError, CameraError, OSError) as exc:
        # the config is well-formed; a head/manifest/camera input it names is missing or bad
        log.error("start_failed", f"cannot start: {exc}", config=str(args.config))
        return exitcodes.BAD_INPUT
    except (CodecError, ConfigError, ValueError) as exc:
        log.error("config_error", f"cannot start: {exc}", config=str(args.config))
        return exitcodes.USAGE
    if args.check:
        log.info("check_ok", f"config OK ({len(cfg.heads)} head(s))", heads=len(cfg.heads))
        return exitcodes.OK
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
