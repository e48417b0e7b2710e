"""The wire-codec flags the training commands share, derived from the codec registry.

Why: ``--codec`` choices and one flag per codec parameter (``--quality`` for JPEG,
``--level`` for PNG and zstd, …) come from :data:`wire.codecs.CODECS`, so a codec registered
there is selectable from ``train``, ``bottlefit`` and ``search`` without editing them, and
the three commands map flags to codec parameters one way. A command states only its own
defaults (BottleFit's recipe runs JPEG at quality 50).

A parameter flag reaches the chosen codec only if that codec declares the parameter. Left at
the command's default it is ignored by codecs without it (``--codec zstd`` with the default
``--quality``); set to anything else for such a codec it is an error naming the flag, so a
typed value is never silently dropped.
"""

from __future__ import annotations

import argparse

from training.compressor import CodecConfig
from wire.codecs import CODECS, Codec, codec_class, feature_codec_names, normalize_params
from wire.errors import CodecError

__all__ = ["add_codec_arguments", "codec_flags", "codec_from_args", "parse_codec_params"]

# Namespace attribute holding the command's parameter defaults (set by add_codec_arguments).
_DEFAULTS = "codec_param_defaults"


def _feature_codecs() -> list[type[Codec]]:
    """The registered codecs that code a bottleneck (not the cloud partition's picture codec)."""
    return [CODECS[n] for n in feature_codec_names()]


def _param_names() -> list[str]:
    """Every parameter name of every feature codec, in registration order, once."""
    names: list[str] = []
    for cls in _feature_codecs():
        names += [n for n in cls.params if n not in names]
    return names


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_codec_arguments(
    p: argparse.ArgumentParser,
    *,
    default: str = "jpeg",
    param_defaults: dict[str, int] | None = None,
    generic: bool = False,
) -> None:
    """``--codec`` plus a flag per codec parameter; ``generic`` adds ``--codec-param K=V``.

    ``param_defaults`` are this command's defaults (None for a parameter: the codec's own).
    """
    defaults = dict(param_defaults or {})
    lines = "; ".join(f"{cls.name}: {cls.help}" for cls in _feature_codecs())
    p.add_argument("--codec", default=default, choices=feature_codec_names(), help=lines)
    for name in _param_names():
        takers = [
            f"{c.name} {c.params[name].help} {c.params[name].describe()}"
            for c in _feature_codecs()
            if name in c.params
        ]
        given = defaults.get(name)
        own = f" (this command's default: {given})" if given is not None else ""
        p.add_argument(
            _flag(name), type=int, default=given, metavar="INT", help="; ".join(takers) + own
        )
    if generic:
        p.add_argument(
            "--codec-param",
            action="append",
            default=[],
            metavar="KEY=INT",
            help="any parameter of the chosen codec, by name",
        )
    p.set_defaults(**{_DEFAULTS: defaults})


def parse_codec_params(items: list[str]) -> dict[str, int]:
    """``["key=3", …]`` -> ``{"key": 3}``; ValueError naming the bad item."""
    params: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--codec-param expects key=value, got {item!r}")
        try:
            params[key] = int(value)
        except ValueError:
            raise ValueError(
                f"--codec-param {key}: value must be an integer, got {value!r}"
            ) from None
    return params


def codec_from_args(args: argparse.Namespace, bits: int) -> CodecConfig:
    """The validated codec the flags name; params hold what was set for that codec only."""
    cls = codec_class(args.codec)
    defaults = getattr(args, _DEFAULTS, {})
    params: dict[str, int] = {}
    for name in _param_names():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name in cls.params:
            params[name] = value
        elif value != defaults.get(name):
            takes = ", ".join(_flag(n) for n in cls.params) or "no parameters"
            raise CodecError(
                f"{_flag(name)} {value} is not a parameter of the {cls.name} codec "
                f"(it takes: {takes})"
            )
    params.update(parse_codec_params(getattr(args, "codec_param", None) or []))
    normalize_params(cls.name, params)
    return CodecConfig(cls.name, bits, params)


def codec_flags(args: argparse.Namespace) -> list[str]:
    """The parameter flags as a command line records them (unset ones left out)."""
    parts: list[str] = []
    for name in _param_names():
        value = getattr(args, name, None)
        if value is not None:
            parts += [_flag(name), str(value)]
    return parts
