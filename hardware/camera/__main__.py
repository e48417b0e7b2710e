"""``python -m hardware.camera SOURCE [--set key=value ...]``: bring-up check for a camera.

On a new board the first question is "does the camera work, at what rate, and are the
colours right?", before any model is involved. This opens the source exactly as the daemon
would (same parameters as the ``[camera.params]`` table), pulls frames for a while, prints
one line of JSON with the measured rate and counters, and can save the last frame so red
can be checked to look red. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image

from wire.atomicfile import write_atomic
from wire.tomlcompat import tomllib

from . import SOURCES, CameraError, CameraTimeout, open_camera


def parse_value(text: str) -> Any:
    """A TOML value (``30``, ``true``, ``"x"``, ``[1, 2]``); anything else is a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CameraError(f"--set expects key=value, got {item!r}")
        params[key.strip()] = parse_value(value.strip())
    return params


def save_png(image: Any, path: Path) -> None:
    """Write atomically: a half-written snapshot must not be mistaken for a broken camera."""
    write_atomic(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def check(
    source: str, params: dict[str, Any], frames: int, timeout: float, save: Path | None
) -> dict:
    cam = open_camera(source, **params)
    got = 0
    last = None
    first_ts = None
    with cam:
        while got < frames:
            try:
                last = cam.latest(timeout)
            except CameraTimeout:
                raise CameraError(
                    f"no frame within {timeout} s (status {cam.status}, last error: {cam.last_error})"
                ) from None
            got += 1
            if first_ts is None:
                first_ts = last.timestamp
        elapsed = last.timestamp - first_ts if last is not None and first_ts is not None else 0.0
        report = {
            "source": source,
            "frames": got,
            "shape": list(last.image.shape) if last is not None else None,
            "fps": round((got - 1) / elapsed, 2) if elapsed > 0 else None,
            "captured": cam.frames_captured,
            "dropped": cam.frames_dropped,
            "reconnects": cam.reconnects,
            "status": cam.status,
            "last_label": last.label if last is not None else None,
        }
    if save is not None and last is not None:
        save_png(last.image, save)
        report["saved"] = str(save)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hardware.camera",
        description="Open a camera source as the daemon would and report its frame rate.",
    )
    parser.add_argument("source", help=f"one of: {', '.join(SOURCES)}")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a source parameter, TOML-typed (e.g. --set device=0 --set path='\"photos\"')",
    )
    parser.add_argument("--frames", type=int, default=30, help="frames to pull (default 30)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait per frame")
    parser.add_argument("--save", type=Path, help="write the last frame to this PNG")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.timeout <= 0:
        print("camera check: --frames must be >= 1 and --timeout > 0", file=sys.stderr)
        return 2
    try:
        report = check(args.source, parse_sets(args.sets), args.frames, args.timeout, args.save)
    except CameraError as exc:
        print(f"camera check: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"camera check: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
