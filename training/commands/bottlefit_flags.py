"""Flags -> configs for BottleFit: the one mapping both ``bottlefit`` runs share.

Why its own module: the ImageNet command (:mod:`training.commands.bottlefit`) dispatches to
the labelled comparison (:mod:`training.commands.bottlefit_dataset`), and both turn the same
flags into a ``CodecConfig`` and a ``BottleFitConfig``; with the mapping here the dataset
command no longer imports the command that imports it.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TYPE_CHECKING

from training.commands import codec_args
from training.compressor import CodecConfig

if TYPE_CHECKING:
    from training.bottlefit import BottleFitConfig

__all__ = ["codec_from_args", "fit_from_args"]


def codec_from_args(args: argparse.Namespace) -> CodecConfig:
    """The wire codec the flags name (the registry's flags; see ``codec_args``), validated."""
    return codec_args.codec_from_args(args, args.bits)


def fit_from_args(args: argparse.Namespace) -> BottleFitConfig:
    """``BottleFitConfig`` from the flags of the same names (one mapping for every caller)."""
    from training.bottlefit import BottleFitConfig  # torch: only when a run is built

    names = [f.name for f in fields(BottleFitConfig)]
    return BottleFitConfig(**{n: getattr(args, n) for n in names if hasattr(args, n)})
