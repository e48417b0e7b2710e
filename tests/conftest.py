"""Shared test helpers: a free port, a stepped clock, waiting on a condition, a TFLite head.

Why here: tests used to import helpers from other test modules and each kept its own
``free_port`` and ``_wait`` loop. Fixtures in this one place replace them, so a test file
imports only the code under test.

Waiting: ``wait_until`` polls a condition against a deadline instead of a fixed
``time.sleep``; it and ``FakeClock`` live in ``support.waiting`` (helpers import them from
there) and are offered here as the ``wait_until`` and ``fake_clock`` fixtures.

Helpers that are not fixtures (heads, tails, peers, processes, the units' sandbox) are in
the ``tests/support`` package.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support.device_side import cached_head
from support.waiting import FakeClock, wait_until

from benchmarks.harness.ray_head import RAY_ENV
from benchmarks.ports import free_port as _free_port

# Before any test module can import Ray (benchmarks/harness/ray_head.py says why).
for _key, _value in RAY_ENV.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()`` -> a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def torch_one_thread():
    """One torch intra-op thread for the test, restored after it: the models in these tests
    are tiny and the machine's cores are shared with the daemons other tests start. torch is
    imported here, not at the top, so board-side test runs never load it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., object]:
    return wait_until


@pytest.fixture(scope="session")
def head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The device tests' int8 TFLite head and its head.json (real TFLiteConverter in a
    subprocess, ~8 s), built once a session and shared by every daemon test."""
    return cached_head(tmp_path_factory.getbasetemp())
