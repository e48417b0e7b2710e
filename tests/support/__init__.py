"""Helpers shared by the test modules: real heads, tails, peers and processes.

Why a package and not test modules: a test file used to import another test file
(``test_device_support``, ``test_converter``) for these, which made pytest's collection and
the helpers' imports depend on each other. Here nothing is collected; tests import
``support.device_side`` (TFLite heads, the ROUTER peer, daemon/server processes),
``support.server_side`` (TorchScript tails, HELLOs, payloads), ``support.converter_side``
(small PyTorch heads, calibration photos, the LiteRT interpreter) and ``support.waiting``
(``wait_until`` a condition instead of ``time.sleep``; ``FakeClock`` for code that takes a
clock). Fixtures built on them live in ``tests/conftest.py``.
"""
