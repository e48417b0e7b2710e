"""Benchmarks whose results are committed under ``benchmarks/results/``.

An import package (unlike ``tests/``) so that ``splitfit-bench`` can run them after a
plain ``pip install``.
"""
