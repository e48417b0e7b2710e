"""The e2e benchmark: radio energy model, CLI dispatch, and (netns) a short shaped run."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from benchmarks import cli, e2e


def test_radio_energy_follows_table3_model():
    link = e2e.LINKS["3G"]
    # 1.1 Mbit/s: 137,500 B take exactly 1 s; P = 868.98·1.1 + 817.88 mW
    assert link.transfer_s(137_500) == pytest.approx(1.0)
    assert link.radio_mj(137_500) == pytest.approx(868.98 * 1.1 + 817.88)
    assert e2e.LINKS["WiFi"].radio_mj(1000) < e2e.LINKS["3G"].radio_mj(1000)


def test_cli_dispatches_and_rejects_unknown(capsys):
    assert cli.main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "e2e" in capsys.readouterr().out
    assert cli.main(["e2e", "--frames", "0"]) == 2


def _skip_reason() -> str | None:
    return e2e.netns_available()


@pytest.mark.netns
def test_namespace_is_shaped_and_deleted():
    if reason := _skip_reason():
        pytest.skip(reason)
    with e2e.ShapedNamespace(e2e.LINKS["3G"]) as ns:
        qdisc = subprocess.run([*ns.prefix(), "tc", "qdisc", "show", "dev", "lo"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert "tbf" in qdisc and "1100Kbit" in qdisc.replace("kbit", "Kbit")
        name = ns.name
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in listed


@pytest.mark.netns
def test_short_run_split_replies_over_shaped_3g(tmp_path):
    if reason := _skip_reason():
        pytest.skip(reason)
    if shutil.which("tc") is None:
        pytest.skip("tc not installed")
    out = tmp_path / "out"
    rc = e2e.main(["--links", "3G", "--frames", "3", "--work", str(tmp_path / "work"),
                   "--out", str(out), "--timeout", "240"])  # fmt: skip
    assert rc == 0
    result = json.loads((out / "e2e.json").read_text())
    rows = {(r["config"], r["link"]): r for r in result["rows"]}
    split, cloud = rows[("split", "3G")], rows[("cloud", "3G")]
    assert split["frames"] == 3  # every frame got a reply from splitfit-server over the link
    assert 0 < split["bytes_per_frame"] < cloud["bytes_per_frame"]
    # shaping is real: unshaped loopback moves a ~12 kB JPEG in well under a millisecond;
    # at 1.1 Mbit/s it needs ~90 ms, and the measured network part of the latency shows it
    network_ms = cloud["latency_ms_p50"] - cloud["server_ms_p50"] - cloud["device_compute_ms_p50"]
    assert network_ms >= 0.6 * cloud["wire_ms"] > 20
    assert (out / "e2e.md").is_file() and (out / "e2e.png").is_file()
