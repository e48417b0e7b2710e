"""The TailBackend interface: what the ZeroMQ front end needs from whatever runs the tails.

Why an interface: the front end (HELLO, CURVE, decode, protocol errors, replies) is the
board-facing part and stays the same whether the tails run in this process
(``server.batcher.DynamicBatcher``, ``[tail] backend = "local"``) or on a Ray cluster
(``server.raybackend.RayTail``, ``backend = "ray"``). Both admit work in two steps, so the
queue bound also covers frames still decoding, and both report the load figures devices use
for partition switching.

Every submitted item ends in exactly one answer posted by the backend through the callbacks
the server gave it: a REPLY built from a result (or from that item's own ItemFailure, see
``server.isolation``), or a typed ERROR. A backend never drops an item silently.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TailBackend(Protocol):
    """Compute for one model, behind the front end."""

    max_batch: int
    max_wait_ns: int
    max_queue: int
    items_run: int
    batches_run: int

    def start(self) -> Any:
        """Start the backend's threads (called once the sockets are bound)."""

    def stop(self, timeout: float | None = 30.0) -> None:
        """Answer everything already submitted, then stop."""

    def reserve(self) -> bool:
        """Claim a queue slot before decoding; False = OVERLOADED."""

    def release(self) -> None:
        """Give back a reserved slot whose frame never reached submit() (decode failed)."""

    def submit(self, item: Any) -> None:
        """Hand over a decoded frame whose slot was reserved; answered via the callbacks."""

    @property
    def queue_depth(self) -> int:
        """Frames admitted and not yet answered (not counting a batch being computed)."""

    @property
    def compute_ms_per_item(self) -> float:
        """Recent tail compute time per frame, ms."""

    def utilization(self) -> float:
        """Busy fraction of the tail over the last second, 0..1."""
