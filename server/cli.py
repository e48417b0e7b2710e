"""Command line entry point for ``splitfit-server``.

    splitfit-server --config server.toml          run until SIGTERM/SIGINT (exit 0)
    splitfit-server --config server.toml --check  validate config + load every tail, exit
    splitfit-server keys --out DIR NAME           write a CURVE key pair NAME.key(_secret)

Every stderr line is one JSON object (``wire.logjson``), errors and Python warnings
included, never a bare traceback: the server is run by systemd and an operator reads
``journalctl``, not a Python stack. Exit codes follow ``wire.exitcodes``: 0 clean stop, 1
run-time failure (cannot bind), 2 bad command line or config, 3 a tail, manifest or key file
the config names is missing or invalid.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from wire import exitcodes
from wire.logjson import get_logger, set_level, setup_logging

log = get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitfit-server",
        description="Run the tail server: ZeroMQ ROUTER, decode, dynamic batching, torch tail.",
    )
    parser.add_argument("--config", type=Path, help="server.toml (see examples/server.toml)")
    parser.add_argument(
        "--check", action="store_true", help="validate the config and load every tail, then exit"
    )
    sub = parser.add_subparsers(dest="command")
    keys = sub.add_parser("keys", help="generate a CURVE key pair (NAME.key + NAME.key_secret)")
    keys.add_argument("--out", type=Path, required=True, help="directory to write the pair into")
    keys.add_argument("name", help="base file name, e.g. 'server' or the device's name")
    return parser


def _keys(out: Path, name: str) -> int:
    from server.auth import AuthError, generate_keypair

    try:
        pair = generate_keypair(out, name)
    except (AuthError, OSError) as exc:
        print(f"splitfit-server keys: {exc}", file=sys.stderr)
        return exitcodes.FAILURE
    print(f"public key: {pair.public}\nsecret key: {pair.secret}")
    return 0


def _serve(config_path: Path, check_only: bool) -> int:
    from server.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log.error("config_error", f"config error: {exc}", config=str(config_path))
        return exitcodes.USAGE
    set_level(config.log.level)

    from server.app import ServerStartError, TailServer
    from server.auth import AuthError
    from server.registry import RegistryError

    try:
        server = TailServer(config)
    except ConfigError as exc:  # e.g. tail.backend = "ray" without the ray extra installed
        log.error("config_error", f"config error: {exc}", config=str(config_path))
        return exitcodes.USAGE
    except (RegistryError, AuthError, OSError) as exc:
        # the config is well-formed; a tail, manifest or key file it names is missing or bad
        log.error("start_failed", str(exc), config=str(config_path))
        return exitcodes.BAD_INPUT
    if check_only:
        print(f"config ok: {len(server.registry)} tail(s): {', '.join(server.registry.ids())}")
        return exitcodes.OK

    def on_signal(signum: int, _frame: object) -> None:
        server.log.info("signal", signal=signal.Signals(signum).name)
        server.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.serve_forever()
    except ServerStartError as exc:
        log.error("start_failed", str(exc), config=str(config_path))
        return exitcodes.FAILURE
    return exitcodes.OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "keys":
        return _keys(args.out, args.name)
    if args.config is None:
        parser.error("--config is required (or use the 'keys' subcommand)")
    setup_logging("info")  # the config's [log] level applies once it is read
    return _serve(args.config, args.check)


if __name__ == "__main__":
    sys.exit(main())
