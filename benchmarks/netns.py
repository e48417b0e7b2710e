"""The links of BottleNet's Table 3 as shaped Linux network namespaces, for the e2e benchmarks.

Why a module of its own: ``benchmarks.e2e`` (fixed configurations) and
``benchmarks.e2e_adaptive`` (the daemon choosing among them, and a link change mid-stream)
shape the same namespaces; neither should import the other to reach them.

Each link is a fresh namespace whose loopback is shaped with ``tc tbf`` (netem is
unavailable here; MTU 1500 or tbf stalls).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Link:
    """One row of BottleNet Table 3: bandwidth and the radio power model P = α·Mbps + β."""

    name: str
    mbps: float
    alpha_mw_per_mbps: float
    beta_mw: float

    def transfer_s(self, nbytes: float) -> float:
        return nbytes * 8 / (self.mbps * 1e6)

    def shaped_floor_s(self, nbytes: float, burst_bytes: int) -> float:
        """The least time a ``tc tbf`` shaper at this rate can take to pass ``nbytes``: a
        full bucket lets ``burst_bytes`` through at once, only the rest waits for tokens.
        (``transfer_s`` is the radio's time, which the energy model uses; on the emulated
        link a payload under the bucket size crosses in about no time, so bytes/bandwidth
        is not a lower bound there.)"""
        return max(0.0, nbytes - burst_bytes) * 8 / (self.mbps * 1e6)

    def radio_mj(self, nbytes: float) -> float:
        p_mw = self.alpha_mw_per_mbps * self.mbps + self.beta_mw
        return p_mw * self.transfer_s(nbytes)  # mW · s = mJ


LINKS = {
    "3G": Link("3G", 1.1, 868.98, 817.88),
    "4G": Link("4G", 5.85, 438.39, 1288.04),
    "WiFi": Link("WiFi", 18.88, 283.17, 132.86),
}


# tbf bucket: ≥ one MTU-sized packet or tbf stalls, and small, because a 16 kB bucket lets a
# whole ~14 kB q85 JPEG through at loopback speed after every idle gap (measured: the cloud
# path then beat its own bytes/bandwidth floor), which would flatter cloud-only.
BURST_BYTES = 4 * 1024
BURST = f"{BURST_BYTES // 1024}kb"  # tc: kb = kilobytes


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be created here (not root, no iproute2): the benchmark skips."""


def netns_available() -> str | None:
    """None when usable, else the reason."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    return None


class ShapedNamespace:
    """A throw-away namespace whose loopback is shaped to ``link``; always deleted on exit."""

    def __init__(self, link: Link | None) -> None:
        self.link = link
        self.name = f"splitfit-e2e-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> ShapedNamespace:
        reason = netns_available()
        if reason:
            raise NetnsUnavailable(reason)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self._ip(["ip", "link", "set", "lo", "mtu", "1500", "up"])
            if self.link is not None:
                rate = f"{self.link.mbps * 1000:.0f}kbit"
                self._ip(["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate,
                          "burst", BURST, "latency", "400ms"])  # fmt: skip
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _ip(self, cmd: list[str]) -> None:
        subprocess.run(self.prefix() + cmd, check=True)

    def change(self, link: Link) -> None:
        """Re-shape the running namespace to ``link`` (``tc qdisc change``): the mid-stream
        link change of the adaptive run, seen by sockets already open."""
        if self.link is None:
            raise ValueError("an unshaped namespace has no qdisc to change")
        rate = f"{link.mbps * 1000:.0f}kbit"
        self._ip(["tc", "qdisc", "change", "dev", "lo", "root", "tbf", "rate", rate,
                  "burst", BURST, "latency", "400ms"])  # fmt: skip
        self.link = link

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
