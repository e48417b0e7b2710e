"""Failure isolation for batched inference: one bad frame fails only itself.

Why: a batch mixes frames from many devices. If one frame makes the tail raise (a kernel
refusing it) or produce NaN/inf (activations far outside what it was trained on), failing
the whole batch lets one careless or hostile client fail everyone's frames (issue #18: an
honest device got 200 of 200 ``ERROR INTERNAL`` while batched with a hostile one).

The rule, independent of how a batch is run (the local batcher, or any other tail backend
that hands in its own ``run``):

- the batch is run once; items whose result passes ``problem`` are answered from it;
- if the call raised, every item is run again alone;
- an item whose result is bad (non-finite) in a batch of several is run again alone, since
  a neighbour may have been the cause;
- what still fails alone is that item's own failure (``ItemFailure``), and only its sender
  gets an error.

Cost: a batch that raises is run 1 + n times (n = its size). That is the price of never
failing an innocent frame; it is paid only by batches that contain a failing frame.
Assumes what inference tails are: each output row depends only on its own input row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ItemFailure:
    """Why one item has no result: the run raised on it alone, or its result was unusable."""

    kind: Literal["raised", "invalid"]
    reason: str


@dataclass
class Isolated(Generic[R]):
    """Per-item outcomes of one batch, plus what the re-runs did (for metrics and logs)."""

    outcomes: list[R | ItemFailure]
    batch_error: str | None  # the whole-batch exception, when there was one
    rerun: int  # items run again alone
    rescued: int  # of those, items that succeeded alone


def run_isolated(
    items: Sequence[T],
    run: Callable[[Sequence[T]], Sequence[R]],
    problem: Callable[[R], str | None],
) -> list[R | ItemFailure]:
    """Run ``items`` as one batch; re-run alone whatever failed. One outcome per item."""
    return run_isolated_report(items, run, problem).outcomes


def run_isolated_report(
    items: Sequence[T],
    run: Callable[[Sequence[T]], Sequence[R]],
    problem: Callable[[R], str | None],
) -> Isolated[R]:
    """``run_isolated`` with the batch error and re-run counts, for the caller's metrics.

    ``run`` takes a list of items and returns one result per item, in order; ``problem``
    returns None for a usable result or a short reason (e.g. "non-finite scores").
    """
    items = list(items)
    try:
        results = list(run(items))
        if len(results) != len(items):
            raise RuntimeError(f"run returned {len(results)} results for {len(items)} items")
    except Exception as exc:
        error = _describe(exc)
        if len(items) == 1:
            return Isolated([ItemFailure("raised", error)], error, 0, 0)
        outcomes = [_alone(item, run, problem) for item in items]
        rescued = sum(not isinstance(o, ItemFailure) for o in outcomes)
        return Isolated(outcomes, error, len(items), rescued)

    outcomes: list[R | ItemFailure] = []
    rerun = rescued = 0
    for item, result in zip(items, results, strict=True):
        reason = problem(result)
        if reason is None:
            outcomes.append(result)
        elif len(items) == 1:
            outcomes.append(ItemFailure("invalid", reason))
        else:
            rerun += 1
            outcome = _alone(item, run, problem)
            rescued += not isinstance(outcome, ItemFailure)
            outcomes.append(outcome)
    return Isolated(outcomes, None, rerun, rescued)


def _alone(
    item: T, run: Callable[[Sequence[T]], Sequence[R]], problem: Callable[[R], str | None]
) -> R | ItemFailure:
    try:
        results = list(run([item]))
        if len(results) != 1:
            raise RuntimeError(f"run returned {len(results)} results for 1 item")
    except Exception as exc:
        return ItemFailure("raised", _describe(exc))
    reason = problem(results[0])
    return results[0] if reason is None else ItemFailure("invalid", reason)


def _describe(exc: BaseException) -> str:
    """One short line: the exception type and the last line of its message."""
    text = str(exc).strip()
    last = text.splitlines()[-1] if text else ""
    return f"{type(exc).__name__}: {last}"[:200] if last else type(exc).__name__
