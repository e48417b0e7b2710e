"""The radio's power while a frame is on the link: BottleNet Table 3, per link type.

Why in the simulator: on a real board the modem or Wi-Fi chip hangs off the same supply rail
as the SoC, so the INA226 sees its transmit power, and an energy-aware partition choice must
see that a split's few hundred bytes cost less radio energy than a JPEG of the frame. The
uplink power model is BottleNet's (after the 4G LTE power study it cites):
``P = alpha * throughput + beta`` mW at the link's average upload throughput, for the air
time ``bytes * 8 / throughput``. The same figures are in ``examples/links.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RadioModel:
    """One column of BottleNet Table 3."""

    name: str
    rate_mbps: float
    alpha_mw_per_mbps: float
    beta_mw: float

    @property
    def power_w(self) -> float:
        """Transmit power at the link's throughput (W)."""
        return (self.alpha_mw_per_mbps * self.rate_mbps + self.beta_mw) / 1e3

    def airtime_s(self, nbytes: int) -> float:
        """How long ``nbytes`` keep the radio transmitting."""
        return nbytes * 8 / (self.rate_mbps * 1e6)

    def energy_mj(self, nbytes: int) -> float:
        return self.power_w * self.airtime_s(nbytes) * 1e3


RADIOS: dict[str, RadioModel] = {
    "3G": RadioModel("3G", 1.1, 868.98, 817.88),
    "4G": RadioModel("4G", 5.85, 438.39, 1288.04),
    "WiFi": RadioModel("WiFi", 18.88, 283.17, 132.86),
}


def radio_model(name: str) -> RadioModel:
    """The Table 3 model called ``name`` (case-insensitive; "wi-fi" is WiFi)."""
    key = {k.lower(): k for k in RADIOS}.get(name.lower().replace("-", ""))
    if key is None:
        raise ValueError(f"unknown radio {name!r}: expected one of {', '.join(RADIOS)}")
    return RADIOS[key]
