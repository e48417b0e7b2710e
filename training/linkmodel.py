"""Link cost model of BottleNet Table 3: latency = bytes*8/rate, energy = (alpha*rate + beta) * time.

Why a TOML file: link numbers differ per deployment, so users edit `examples/links.toml`
instead of code. It is validated once here; unknown or missing keys raise naming the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

_KEYS = ("rate_mbps", "alpha_mw_per_mbps", "beta_mw")


class LinkConfigError(ValueError):
    """A links TOML file is malformed; the message names the offending key."""


@dataclass(frozen=True)
class Link:
    name: str
    rate_mbps: float
    alpha_mw_per_mbps: float
    beta_mw: float

    @property
    def power_mw(self) -> float:
        """Radio power while transmitting (BottleNet Eq.: P = alpha * t_u + beta)."""
        return self.alpha_mw_per_mbps * self.rate_mbps + self.beta_mw

    def tx_ms(self, nbytes: float) -> float:
        return nbytes * 8.0 / (self.rate_mbps * 1e6) * 1e3

    def tx_energy_mj(self, nbytes: float) -> float:
        return self.power_mw * self.tx_ms(nbytes) / 1e3


TABLE3: tuple[Link, ...] = (
    Link("3G", 1.1, 868.98, 817.88),
    Link("4G", 5.85, 438.39, 1288.04),
    Link("WiFi", 18.88, 283.17, 132.86),
)


def parse_links(data: dict) -> list[Link]:
    links_tbl = data.get("links")
    extra = set(data) - {"links"}
    if extra:
        raise LinkConfigError(
            f"unknown key {sorted(extra)[0]!r} (expected only [links.NAME] tables)"
        )
    if not isinstance(links_tbl, dict) or not links_tbl:
        raise LinkConfigError("missing key 'links': need at least one [links.NAME] table")
    out = []
    for name, tbl in links_tbl.items():
        if not isinstance(tbl, dict):
            raise LinkConfigError(f"links.{name} must be a table")
        for k in tbl:
            if k not in _KEYS:
                raise LinkConfigError(f"unknown key 'links.{name}.{k}'")
        vals = []
        for k in _KEYS:
            if k not in tbl:
                raise LinkConfigError(f"missing key 'links.{name}.{k}'")
            v = tbl[k]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise LinkConfigError(f"'links.{name}.{k}' must be a number, got {v!r}")
            if v < 0 or (k == "rate_mbps" and v <= 0):
                raise LinkConfigError(f"'links.{name}.{k}' must be positive, got {v!r}")
            vals.append(float(v))
        out.append(Link(name, *vals))
    return out


def load_links(path: Path | str) -> list[Link]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise LinkConfigError(f"links file not found: {path}") from e
    except tomllib.TOMLDecodeError as e:
        raise LinkConfigError(f"{path}: invalid TOML: {e}") from e
    return parse_links(data)
