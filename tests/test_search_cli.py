"""``splitfit-train search`` end to end on the synthetic set (tiny schedule, 2 candidates).

The numbers are synthetic, not accuracy claims; what is checked is that the command trains,
measures, costs and selects consistently with the tested pure core, and exports loadable halves.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from training.cli import main  # noqa: E402
from training.linkmodel import load_links  # noqa: E402
from training.search import Candidate, select  # noqa: E402


def _args(tmp_path, *extra: str) -> list[str]:
    return [
        "search",
        "--data",
        "synthetic",
        "--splits",
        "rb1,rb2",
        "--channels",
        "2",
        "--strides",
        "2",
        "--epochs",
        "1",
        "--limit-train",
        "96",
        "--limit-val",
        "32",
        "--batch-size",
        "32",
        "--bytes-samples",
        "8",
        "--latency-runs",
        "3",
        "--baseline-acc",
        "50",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--results",
        str(tmp_path / "search.json"),
        "--no-progress",
        *extra,
    ]


def test_search_end_to_end(tmp_path, capsys):
    assert main(_args(tmp_path)) == 0
    result = json.loads((tmp_path / "search.json").read_text())
    md = (tmp_path / "search.md").read_text()
    names = [r["name"] for r in result["candidates"]]
    assert names == ["rb1_c2_s2", "rb2_c2_s2"]
    for name in names:
        assert sum(line.startswith(f"| {name}") for line in md.splitlines()) == 2  # table + bits

    links = load_links("examples/links.toml")
    assert set(result["chosen"]) == {ln.name for ln in links}
    cands = []
    for r in result["candidates"]:
        assert 1 <= r["bits"] <= 8 and r["nbytes"] > 0 and r["head_ms"] > 0
        assert r["accuracy"] == pytest.approx(r["acc_by_bits"][str(r["bits"])])
        c = Candidate(**{k: r[k] for k in Candidate.__dataclass_fields__})
        cands.append((c, r))
    pool = [c for c, r in cands if r["eligible"]]
    if any(r["within_budget"] for _, r in cands):
        assert all(r["eligible"] == r["within_budget"] for _, r in cands)
    else:
        best = max(c.accuracy for c, _ in cands)
        assert pool == [c for c, _ in cands if c.accuracy >= best - 2.0]
    for ln in links:
        for obj in ("latency", "energy"):
            best = select(pool, ln, obj)
            assert result["chosen"][ln.name][obj] == f"{best.split}_c{best.channels}_s{best.stride}"
            assert f"| {ln.name} | {obj} | {result['chosen'][ln.name][obj]} |" in md

    for name in names:
        d = tmp_path / "out" / name
        head, tail = torch.jit.load(str(d / "head.pt")), torch.jit.load(str(d / "tail.pt"))
        tail_json = json.loads((d / "tail.json").read_text())
        row = next(r for r in result["candidates"] if r["name"] == name)
        assert tail_json["codec"]["bits"] == row["bits"]
        assert tail_json["model_id"] == row["model_id"]
        z = head(torch.rand(1, 3, *tail_json["split"]["input_hw"]))
        assert list(z.shape[1:]) == tail_json["input_chw"]
        assert tail(z).shape == (1, tail_json["num_classes"])


def test_search_bad_links_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "links.toml"
    bad.write_text("[links.3G]\nrate_mbps = 1.1\nalpha_mw_per_mbps = 1\nbeta_mw = 1\nwat = 2\n")
    assert main(_args(tmp_path, "--links", str(bad))) == 2
    err = capsys.readouterr().err.strip()
    assert "links.3G.wat" in err and "\n" not in err
    assert not (tmp_path / "search.json").exists()
