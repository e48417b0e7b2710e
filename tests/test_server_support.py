"""Kept only for ``tests/test_server_ray.py``, which still imports ``tests.test_server_support``.

The helpers live in ``tests/support/server_side.py``; new tests import them from there.
"""

from support.server_side import *  # noqa: F403
