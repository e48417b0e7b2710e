"""A rate-trained split end to end with its entropy tables: train -> convert-head -> the
real daemon (rans) -> the real tail server, answers checked against the tail run here.

Why: the tables that drive ``rans`` are made in training, copied by the converter into
``head.json`` and read by the server from ``tail.json``. Only the whole chain shows that
the board and the server code with the same tables: if the server decoded other features
than the board encoded, its answer would differ from the tail run in-process on the
board's own payload decoded here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.device_side import ROOT, start_daemon, start_server, write_config

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")  # convert-head's converter

N_FILES = 4
N_FRAMES = 8  # the folder camera loops: every photo is sent twice


def _photos(folder: Path, n: int, seed: int) -> list[Path]:
    """``n`` PNG crops (40x40) of the shipped colour photos: lossless, so the camera reads
    exactly the pixels this test reads."""
    from PIL import Image

    from training.data.photos import shipped_photos

    photos = shipped_photos(("skimage", "sklearn"))
    if len(photos) < 2:
        pytest.skip("shipped photos not installed (scikit-image / scikit-learn)")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    out = []
    for k in range(n):
        with Image.open(photos[k % len(photos)].path) as img:
            rgb = img.convert("RGB")
        w, h = rgb.size
        s = int(min(w, h) * rng.uniform(0.4, 0.9))
        x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        path = folder / f"{k:02d}.png"
        rgb.crop((x0, y0, x0 + s, y0 + s)).resize((40, 40)).save(path)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def rate_split(tmp_path_factory) -> Path:
    """A tiny rate-trained split (synthetic shapes, 32x32, rans codec) and its int8 head."""
    from support.rate_jobs import tiny_rate_job

    from training.pipeline import run_train

    base = tmp_path_factory.mktemp("rate-e2e")
    job = tiny_rate_job(bits=4, lanes=4, limit_train=96)
    before = torch.get_num_threads()
    try:
        run_train(job, base / "export")
    finally:
        torch.set_num_threads(before)
    calib = _photos(base / "calib", 12, seed=1)[0].parent
    (base / "board").mkdir()
    convert = subprocess.run(
        [
            sys.executable,
            "-m",
            "converter.cli",
            str(base / "export" / "head.pt"),
            "-o",
            str(base / "board" / "head.tflite"),
            "--calib",
            str(calib),
            "--tail",
            str(base / "export" / "tail.pt"),
            "--no-progress",
            # a 2-channel head trained for one epoch: its int8 grid matches the float head
            # less closely than a real one (measured 0.9875 on 2 held-out images)
            "--min-cosine",
            "0.95",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert convert.returncode == 0, convert.stderr[-3000:]
    return base


@pytest.mark.slow
def test_rate_trained_split_through_daemon_and_server_answers_as_the_tail_here(
    rate_split: Path, tmp_path: Path, free_port
) -> None:
    from device.head import Head
    from hardware.camera.folder import load_rgb
    from hardware.preprocess import preprocess
    from wire.manifest import load_head_manifest, load_tail_manifest

    board = rate_split / "board"
    head_m = load_head_manifest(board / "head.json")
    tail_m = load_tail_manifest(rate_split / "export" / "tail.json")
    # the converter carried the training's tables to the board, under the same hash
    assert head_m.codec["name"] == "rans" and set(head_m.codec_tables()) == {"rans", "zstd_dict"}
    assert head_m.codec == tail_m.codec and head_m.model_id == tail_m.model_id

    frames = _photos(tmp_path / "camera", N_FILES, seed=7)
    port = free_port()
    server = start_server(tmp_path / "server", port, rate_split / "export")
    camera = (
        f'[camera]\nsource = "folder"\n[camera.params]\npath = "{frames[0].parent}"\nloop = true\n'
    )
    try:
        cfg = write_config(
            tmp_path / "d.toml",
            board / "head.tflite",
            port,
            f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n',
            camera=camera,
        )
        d = start_daemon(cfg, "--frames", str(N_FRAMES), "--summary", str(tmp_path / "s.json"))
        assert d.p.wait(120) == 0, d.err[-10:]
    finally:
        server.stop()
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["replied"] == N_FRAMES and summary["server_errors"] == 0, summary
    rows = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["status"] == "ok"]
    assert len(rows) == N_FRAMES and all(r["top1"] is not None for r in rows), rows

    # the same frames here: the board's preprocess and int8 head, its codec from head.json;
    # the server's codec from tail.json decodes; the exported tail answers
    head = Head("here", board / "head.tflite", board / "head.json", num_threads=1)
    board_codec = head_m.feature_codec()
    server_codec = tail_m_codec(tail_m, board_codec)
    tail = torch.jit.load(str(rate_split / "export" / "tail.pt")).eval()
    for row in rows:
        path = frames[row["frame_number"] % N_FILES]  # sorted names, one pass after another
        x = preprocess(load_rgb(path), size=tuple(head_m.input.shape[1:3]))
        payload = board_codec.encode_int8(head.run(x).tensor, layout="NHWC")
        assert row["bytes"] == len(payload), (row, len(payload))
        decoded = server_codec.decode_float(payload)
        assert np.array_equal(decoded, board_codec.decode_float(payload))
        with torch.no_grad():
            probs = torch.softmax(tail(torch.from_numpy(decoded[None])), dim=1)[0]
        assert row["top1"] == int(probs.argmax())
        assert row["top1_score"] == pytest.approx(float(probs.max()), rel=1e-5, abs=1e-6)


def tail_m_codec(tail_m, board_codec):
    """The server's codec for a session: the tail manifest's tables, the HELLO's params."""
    from wire.codecs import FeatureCodec

    return FeatureCodec(
        tuple(tail_m.input_chw),
        board_codec.quant,
        tail_m.codec["name"],
        dict(board_codec.params),
        tables=tail_m.codec_tables(),
    )
