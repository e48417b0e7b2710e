"""benchmarks.split_points: MAC counting, C' sizing and the 3G energy arithmetic."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from benchmarks import split_points as sp  # noqa: E402
from benchmarks.e2e import LINKS  # noqa: E402


def test_conv_macs_counts_grouped_convs_and_linear_exactly() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8x16x16 outputs x 27
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 8x16x16 x 9
        nn.Flatten(),
        nn.Linear(8 * 16 * 16, 10),
    )
    macs = sp.conv_macs(net, torch.zeros(1, 3, 32, 32))
    assert macs == 8 * 16 * 16 * 27 + 8 * 16 * 16 * 9 + 10 * 8 * 16 * 16


def test_channels_for_matches_the_payload_of_one_bit_codes() -> None:
    assert sp.channels_for((7, 7), 1, 660) == round(660 * 8 / 49)  # 108
    assert sp.channels_for((56, 56), 2, 660) == round(660 * 8 / 784)
    assert sp.channels_for((7, 7), 4, 660) == round(660 * 8 / 4)  # ceil-divided grid
    assert sp.channels_for((7, 7), 1, 1) == 1


def _rows() -> list[dict]:
    return [
        {"split": "stem", "head_macs": 1, "full_macs": 10, "head_ms_2t": 3.0},
        {"split": "stage6", "head_macs": 9, "full_macs": 10, "head_ms_2t": 10.0},
        {"split": sp.FULL, "head_macs": 10, "full_macs": 10, "head_ms_2t": 12.0},
    ]


def test_energy_table_charges_preprocess_and_radio_like_the_e2e_benchmark() -> None:
    rows = _rows()
    costs = {"preprocess_ms": 1.5, "jpeg_encode_ms": 0.5, "jpeg_bytes_mean": 13600.0}
    e = sp.energy_table(rows, costs, busy_w=3.5, threads=2)
    g = LINKS["3G"]
    cloud = 3.5 * 2.0 + g.radio_mj(13600)
    assert e["cloud_3g_mj"] == pytest.approx(cloud)
    stem, full = rows[0], rows[2]
    assert stem["energy_3g_mj"] == pytest.approx(3.5 * 4.5 + g.radio_mj(sp.PAYLOAD_BYTES))
    assert full["energy_3g_mj"] == pytest.approx(3.5 * 13.5)  # local: no radio
    assert stem["gain_over_cloud_3g"] == pytest.approx(cloud / stem["energy_3g_mj"])
    # the head-time budget for a 10x gain, inverted: spending exactly it hits the target
    budget = e["head_ms_budget_660_bytes"]
    spent = 3.5 * (1.5 + budget) + g.radio_mj(sp.PAYLOAD_BYTES)
    assert cloud / spent == pytest.approx(sp.ENERGY_GAIN_TARGET)


def test_verdict_names_the_best_split_and_whether_it_meets_the_target() -> None:
    rows = _rows()
    costs = {"preprocess_ms": 1.5, "jpeg_encode_ms": 0.5, "jpeg_bytes_mean": 13600.0}
    result = {"rows": rows, "energy": sp.energy_table(rows, costs, 3.5, 2)}
    text = sp.verdict(result)
    assert text.startswith("Best split for 3G energy: stem")
    assert "below the 10× target" in text
    costs["jpeg_bytes_mean"] = 400_000.0  # a huge image makes any small head a 10x win
    rows = _rows()
    result = {"rows": rows, "energy": sp.energy_table(rows, costs, 3.5, 2)}
    assert "meets the 10× target" in sp.verdict(result)
