"""A stand-in for a kill: a progress wrapper that raises after a given number of epochs.

Why: the resumable stages must continue where a killed run stopped; raising from the
progress iterator stops a stage exactly between two epochs, after its checkpoint was written,
as a SIGKILL between epochs would, without a subprocess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator


class Killed(Exception):
    """Raised by :func:`killed_after` in place of the process dying."""


def killed_after(epochs: int) -> Callable[[Iterable], Iterator]:
    """A ``progress`` wrapper that lets ``epochs`` epochs run, then raises :class:`Killed`."""

    def progress(it: Iterable) -> Iterator:
        for k, e in enumerate(it):
            if k == epochs:
                raise Killed
            yield e

    return progress
