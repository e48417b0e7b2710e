"""A benchmark's three result files: ``NAME.json``, ``NAME.md`` and ``NAME.png``.

Why one function: every benchmark that ends with a JSON result, a Markdown report and a plot
wrote the same four steps (folder, JSON, Markdown, plot) in its ``main``, some through
``wire.atomicfile`` and some not. Here each file is written atomically, JSON first, so a
run killed half-way leaves the previous report whole, never a report of a run it lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from wire.atomicfile import write_json_atomic

Writer = Callable[[Any, Path], None]


def write_results(
    out: Path, name: str, result: Any, markdown: Writer, plot: Writer | None = None
) -> Path:
    """Write ``out/NAME.json``, then ``markdown(result, out/NAME.md)`` and ``plot(result,
    out/NAME.png)`` (both writers must write atomically); return the Markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"{name}.json", result)
    md = out / f"{name}.md"
    markdown(result, md)
    if plot is not None:
        plot(result, out / f"{name}.png")
    return md
