"""The environment Ray needs in the tests: one machine, loopback only, no token, no telemetry.

Why a module of its own and why ``tests/conftest.py`` applies it: Ray reads these variables
when it is *imported*, and any test module may import it first (``benchmarks.scaleout`` and
``server.raybackend`` both do). Set late, Ray 2.60 picks the machine's own address instead of
127.0.0.1 and ``ray.init`` waits for a GCS it cannot reach. Nothing else in the suite reads
``RAY_*``.
"""

from __future__ import annotations

RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
