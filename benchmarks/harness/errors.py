"""The errors a harness step raises: something the user can fix, printed without a traceback."""

from __future__ import annotations

from wire import exitcodes


class BenchError(RuntimeError):
    """A step failed (a daemon exited, a conversion failed); the message says which and how.

    ``exit_code`` is what a benchmark CLI returns for it (wire.exitcodes).
    """

    exit_code = exitcodes.FAILURE


class MissingArtifacts(BenchError):
    """The split model or sample photos to deploy are not there (wire.exitcodes: 3)."""

    exit_code = exitcodes.BAD_INPUT
