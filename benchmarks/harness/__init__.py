"""What the benchmarks that run the real daemons share, one job per module.

- :mod:`.processes`: start ``splitfit-server`` / ``splitfit-device`` (or any helper) as
  subprocesses with their output in a log, wait for them, stop them cleanly, and always
  stop every one on the way out;
- :mod:`.configs`: ``server.toml`` and ``device.toml`` built as the daemons' own config types
  and encoded to TOML, so a benchmark cannot write a key the daemon would refuse;
- :mod:`.artifacts`: the shipped split model turned into what the daemons load (the int8
  head through the ``convert-head`` cache, the tail directory, the camera and calibration
  photo folders).

Why a package: the demo, e2e, e2e_adaptive and daemon benchmarks each had their own copy of
these steps (or reached into ``benchmarks.demo``'s private helpers for them).
"""

from benchmarks.harness.errors import BenchError, MissingArtifacts

__all__ = ["BenchError", "MissingArtifacts"]
