"""Exit statuses shared by every splitfit command line tool.

Why one table: a script or systemd unit wrapping ``convert-head``, ``splitfit-device``,
``splitfit-server``, ``power-log``, ``splitfit-train`` or ``splitfit-bench`` must be able to
tell "you called me wrong" from "a file you pointed me at is missing or broken" from "I
started and then failed" without parsing messages. Before, the same situation gave
different codes in different tools (a missing tail: 1 from the server; a missing head: 2
from the device).

==  =================  ================================================================
0   ``OK``             done (for a service: stopped cleanly on SIGTERM/SIGINT or at its
                       configured end)
1   ``FAILURE``        started, then failed at run time: cannot bind, the pipeline died,
                       a toolchain crashed, a conversion failed verification
2   ``USAGE``          the command line or a config file is wrong: bad option or value,
                       unknown config key, contradictory options (argparse's own code)
3   ``BAD_INPUT``      an input file or model artifact named by the command line or
                       config is missing, unreadable or not what it claims to be (head,
                       tail, model, key file, dataset, power log, calibration images)
4-9                    reserved for one tool's refinements of 1 or 3, documented by that
                       tool (``convert-head``: 4 input size, 5 calibration, 6 unsupported
                       op, 7 converter backend, 8 invalid TFLite, 9 verification)
130 ``INTERRUPTED``    stopped by Ctrl-C before finishing a one-shot job (128 + SIGINT)
==  =================  ================================================================

A file that is missing is 3 even when its path came from a config file: the config is
well-formed, the thing it points at is not there. Lives in ``wire/`` so every package,
the board side included, uses the same names.
"""

from __future__ import annotations

__all__ = ["BAD_INPUT", "FAILURE", "INTERRUPTED", "OK", "USAGE"]

OK = 0
FAILURE = 1
USAGE = 2
BAD_INPUT = 3
INTERRUPTED = 130
