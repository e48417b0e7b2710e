"""``splitfit-train search`` end to end on the synthetic set (tiny schedule, 1-2 candidates).

The numbers are synthetic, not accuracy claims; what is checked is that the command trains,
measures, costs and selects consistently with the tested pure core, and exports loadable halves.
The head-latency backends run for real: the int8 route converts with the project's converter
and times the result with the device's loader; the fallbacks are reached by a genuine
verification failure and by a process in which tensorflow cannot be imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


ROOT = Path(__file__).resolve().parents[1]
ONE = ("--splits", "rb1")  # a single candidate where the test is about the latency route


def _png_ok(path: Path) -> None:
    """A real, complete PNG (the plot is written via a temp file + os.replace)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.load()
        assert img.size[0] > 600 and img.size[1] > 600
    assert not list(path.parent.glob(".search.png.*"))


def test_search_end_to_end(tmp_path, capsys):
    assert main(_args(tmp_path, "--latency-backend", "torch")) == 0
    result = json.loads((tmp_path / "search.json").read_text())
    md = (tmp_path / "search.md").read_text()
    assert result["latency_backend"] == "torch-cpu"
    assert result["latency"]["reason"] == "--latency-backend torch"
    assert result["latency"]["requested"] == "torch"
    _png_ok(tmp_path / "search.png")
    assert "![search](search.png)" in md
    names = [r["name"] for r in result["candidates"]]
    assert names == ["rb1_c2_s2", "rb2_c2_s2"]
    for name in names:
        assert sum(line.startswith(f"| {name}") for line in md.splitlines()) == 2  # table + bits

    links = load_links("examples/links.toml")
    assert set(result["chosen"]) == {ln.name for ln in links}
    cands = []
    for r in result["candidates"]:
        assert 1 <= r["bits"] <= 8 and r["nbytes"] > 0 and r["head_ms"] > 0
        assert r["latency_backend"] == "torch-cpu" and r["head_ms"] == r["head_ms_torch"]
        assert r["head_ms_tflite"] is None and r["conversion"] is None
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
        assert not (d / "head.tflite").exists()  # torch: the converter is not run
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


@pytest.mark.slow
def test_search_times_the_converted_int8_head(tmp_path):
    """auto with the converter installed: convert, time with device.head.Head, cost with it."""
    from device.head import Head

    args = _args(tmp_path, *ONE, "--calib-images", "20", "--min-cosine", "0.9")
    assert main([*args, "--latency-runs", "5"]) == 0
    result = json.loads((tmp_path / "search.json").read_text())
    assert result["latency_backend"] == "tflite-int8" and result["latency"]["failures"] == {}
    (row,) = result["candidates"]
    assert row["latency_backend"] == "tflite-int8"
    assert row["head_ms"] == row["head_ms_tflite"] > 0 and row["head_ms_torch"] > 0
    conv = row["conversion"]
    assert conv["ok"] and conv["error"] is None and conv["cosine_min"] >= 0.9
    assert result["latency"]["calibration"]["images"] == 20
    calib = sorted((tmp_path / "out" / "calibration").glob("calib-*.png"))
    assert len(calib) == 20

    # The exported folder holds a head the device loads, paired with the exported tail.
    d = tmp_path / "out" / "rb1_c2_s2"
    head = Head("rb1", d / "head.tflite", d / "head.json")
    tail_json = json.loads((d / "tail.json").read_text())
    assert head.model_id == tail_json["model_id"] == row["model_id"]
    assert head.quant.bits == row["bits"] == tail_json["codec"]["bits"]
    assert list(head.bottleneck_chw) == tail_json["input_chw"]

    # ... and it computes the trained head: int8 output vs torch on a calibration image.
    with Image.open(calib[0]) as img:
        px = np.array(img.convert("RGB"))[None]
    out = head.run(px).tensor.astype(np.float32)
    deq = (out - head.quant.zero_point) * head.quant.scale
    mean = torch.tensor(tail_json["extra"]["normalization"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(tail_json["extra"]["normalization"]["std"]).view(1, 3, 1, 1)
    x = (torch.from_numpy(px).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    ref = torch.jit.load(str(d / "head.pt"))(x).detach().numpy().transpose(0, 2, 3, 1)
    cos = float((deq * ref).sum() / (np.linalg.norm(deq) * np.linalg.norm(ref) + 1e-12))
    assert cos > 0.9
    _png_ok(tmp_path / "search.png")
    md = (tmp_path / "search.md").read_text()
    assert "**tflite-int8**" in md and f"{row['head_ms_tflite']:.3f}" in md


@pytest.mark.slow
def test_failed_conversion_falls_back_to_torch_and_names_the_failure(tmp_path):
    """--min-cosine 1.0: the real conversion runs, verification rejects it (int8 is never
    exact), so no head.tflite is exported and every cost uses torch, with the reason."""
    assert main(_args(tmp_path, *ONE, "--min-cosine", "1.0", "--latency-runs", "3")) == 0
    result = json.loads((tmp_path / "search.json").read_text())
    (row,) = result["candidates"]
    assert result["latency_backend"] == row["latency_backend"] == "torch-cpu"
    assert row["head_ms"] == row["head_ms_torch"] and row["head_ms_tflite"] is None
    assert not row["conversion"]["ok"]
    assert row["conversion"]["error"].startswith("VerificationError: verification failed")
    assert result["latency"]["failures"] == {"rb1_c2_s2": row["conversion"]["error"]}
    assert "rb1_c2_s2" in result["latency"]["reason"]
    assert "verification failed" in result["latency"]["reason"]
    assert not (tmp_path / "out" / "rb1_c2_s2" / "head.tflite").exists()
    md = (tmp_path / "search.md").read_text()
    assert "- rb1_c2_s2: VerificationError: verification failed" in md
    _png_ok(tmp_path / "search.png")


@pytest.mark.slow
def test_required_tflite_backend_fails_on_a_failed_conversion(tmp_path, capsys):
    args = _args(tmp_path, *ONE, "--latency-backend", "tflite", "--min-cosine", "1.0")
    assert main(args) == 1  # wire.exitcodes.FAILURE: the run failed, the options were valid
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("splitfit-train search: error: --latency-backend tflite: rb1_c2_s2:")
    assert "verification failed" in err
    assert not (tmp_path / "search.json").exists()


# A process in which tensorflow is genuinely not importable (as on a training-only machine):
# a None entry in sys.modules is Python's own "this module does not exist" marker.
_NO_TF = """
import sys
sys.modules["tensorflow"] = None
from training.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_without_tensorflow(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _NO_TF, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_tensorflow_auto_falls_back_and_tflite_refuses(tmp_path):
    proc = _run_without_tensorflow(_args(tmp_path, *ONE, "--latency-backend", "tflite"))
    assert proc.returncode == 1  # wire.exitcodes.FAILURE: a dependency this machine lacks
    assert proc.stderr.strip().splitlines()[-1] == (
        "splitfit-train search: error: --latency-backend tflite needs the converter: "
        "tensorflow is not installed"
    )
    assert not (tmp_path / "out").exists()  # refused before any training

    proc = _run_without_tensorflow(_args(tmp_path, *ONE, "--latency-runs", "3"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "search.json").read_text())
    assert result["latency_backend"] == "torch-cpu"
    assert result["latency"]["reason"] == ("converter unavailable: tensorflow is not installed")
    (row,) = result["candidates"]
    assert row["conversion"] is None and row["head_ms"] == row["head_ms_torch"] > 0
    assert not (tmp_path / "out" / "rb1_c2_s2" / "head.tflite").exists()
    _png_ok(tmp_path / "search.png")
