"""A folder camera with ``loop = false`` is a finite batch: the daemon processes every image
once and exits at the end of the input.

Why: the camera is a newest-frame slot, and a live camera may drop frames; but a folder
with ``fps = 0`` runs lockstep (the producer waits until the frame is taken), so a user who
points the daemon at six images expects six results. The daemon used to drain (and drop)
the first image while its session to the server was still being set up, so such a run
submitted five of six.
"""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from support.device_side import metrics_rows, start_daemon, start_peer, write_config

N_IMAGES = 6


def test_folder_without_loop_sends_every_image_once(head, tmp_path, free_port):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for k in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            photos / f"{k:02d}.png"
        )
    port = free_port()
    peer = start_peer(f"tcp://127.0.0.1:{port}")
    camera = (
        f'[camera]\nsource = "folder"\n[camera.params]\npath = "{photos}"\nloop = false\nfps = 0\n'
    )
    try:
        cfg = write_config(
            tmp_path / "d.toml",
            head[0],
            port,
            f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n',
            camera=camera,
        )
        d = start_daemon(cfg, "--summary", str(tmp_path / "sum.json"))
        assert d.p.wait(60) == 0, d.err[-10:]
    finally:
        peer.kill()
    assert d.wait_for(lambda e: e.get("event") == "end_of_input", 5, "err") is not None
    summary = json.loads((tmp_path / "sum.json").read_text())
    assert summary["frames_submitted"] == N_IMAGES, summary
    assert summary["replied"] == N_IMAGES, summary
    rows = metrics_rows(tmp_path / "m.jsonl")
    # every image exactly once, in the folder's sorted order
    assert [r["frame_number"] for r in rows] == list(range(N_IMAGES)), rows
    assert all(r["status"] == "ok" for r in rows), rows
    sent = [e for e in peer.events() if e.get("event") == "frame"]
    assert len(sent) == N_IMAGES
