"""The e2e benchmark: radio energy model, CLI dispatch, and (netns) a short shaped run."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
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
    # the whole teacher in int8 on the device side, on the same photos as local float
    local, local8 = rows[("local", None)], rows[("local-int8", None)]
    assert local8["frames"] == local["frames"] == 3 and local8["bytes_per_frame"] == 0
    assert local8["top1_agreement_with_teacher"] is not None
    assert set(result["int8_full_model"]["by_threads"]) == {"1", "2"}
    assert isinstance(result["targets"]["3G"]["split_faster_than_local_int8"], bool)
    md = (out / "e2e.md").read_text()
    assert "| none | local-int8 |" in md and "Split vs the int8 full model" in md
    assert (out / "e2e.png").is_file()


# --------------------------------------------------------------------------------------
# device-compute accounting: every configuration pays the same 224² preprocess


def _rows(kind: str) -> list[dict]:
    """Hand-made per-frame records, shaped like what each configuration's runner writes."""
    base = {"path": "p/a.jpg", "label": "a", "label_id": 1, "top1": 1, "preprocess_ms": 1.5}
    if kind == "split":
        return [{**base, "status": "ok", "head_ms": 10.0, "encode_ms": 0.5, "bytes": 600,
                 "capture_ms": 2.0, "latency_ms": 30.0, "server_compute_ms": 5.0,
                 "correct": True}]  # fmt: skip
    if kind == "cloud":
        return [{**base, "encode_ms": 0.4, "bytes": 13000, "latency_ms": 120.0,
                 "server_ms": 30.0}]  # fmt: skip
    return [{**base, "model_ms": 25.0, "bytes": 0, "latency_ms": 26.5}]


@pytest.mark.parametrize(
    ("kind", "own_ms"),
    [("split", 10.0 + 0.5), ("cloud", 0.4), ("local", 25.0), ("local-int8", 25.0)],
)
def test_device_compute_includes_preprocess_for_every_kind(kind, own_ms):
    link = None if kind.startswith("local") else e2e.LINKS["3G"]
    row = e2e.summarize_config(kind, _rows(kind), link, {"p/a.jpg": 1}, busy_w=3.5, speedup=30)
    assert row["device_compute_ms_p50"] == pytest.approx(1.5 + own_ms)
    assert row["energy_compute_mj"] == pytest.approx(3.5 * (1.5 + own_ms))
    shaped = (
        0.0
        if link is None
        else max(0, _rows(kind)[0]["bytes"] - e2e.BURST_BYTES) * 8e3 / (link.mbps * 1e6)
    )
    assert row["floor_ms"] == pytest.approx(1.5 + own_ms + shaped + row["server_ms_p50"])


def test_floor_is_built_from_each_frames_own_parts_so_p50_never_falls_below_it():
    """Three frames whose latency is exactly their measured parts, with device and server
    times anti-correlated (a slow head meets an idle server): the median of the sums is
    below the sum of the medians, and a 660-byte payload crosses a full tbf bucket at once,
    so the old floor (p50 compute + p50 server + bytes/bandwidth) sat above the measured
    p50. The floor must be <= p50 by construction, and equal here (nothing unaccounted)."""
    link = e2e.LINKS["3G"]
    rows = []
    for head, server in ((2.0, 20.0), (20.0, 2.0), (11.0, 11.0)):
        rows.append({"path": "p/a.jpg", "label": "a", "label_id": 1, "top1": 1, "status": "ok",
                     "preprocess_ms": 1.0, "head_ms": head, "encode_ms": 0.0, "bytes": 660,
                     "capture_ms": 0.0, "latency_ms": 1.0 + head + server,
                     "server_compute_ms": server, "correct": True})  # fmt: skip
    row = e2e.summarize_config("split", rows, link, {}, busy_w=3.5, speedup=30)
    assert row["latency_ms_p50"] == pytest.approx(23.0)
    assert row["floor_ms"] == pytest.approx(23.0)
    assert row["latency_over_floor"] == pytest.approx(1.0)
    assert row["frames_below_floor"] == 0
    # a payload over the bucket pays for the rest at the link rate
    big = [{**r, "bytes": e2e.BURST_BYTES + 1375, "latency_ms": r["latency_ms"] + 10.0}
           for r in rows]  # fmt: skip
    row = e2e.summarize_config("split", big, link, {}, busy_w=3.5, speedup=30)
    assert row["floor_ms"] == pytest.approx(23.0 + 10.0)  # 1375 B at 1.1 Mbit/s = 10 ms
    assert row["latency_over_floor"] == pytest.approx(1.0)
    # a frame faster than its own parts is a measurement error and is counted, not hidden
    bad = [{**rows[0], "latency_ms": 5.0}, *rows[1:]]
    assert (
        e2e.summarize_config("split", bad, link, {}, busy_w=3.5, speedup=30)["frames_below_floor"]
        == 1
    )


def test_missing_preprocess_time_is_an_error_not_zero():
    rows = _rows("cloud")
    del rows[0]["preprocess_ms"]
    with pytest.raises(KeyError, match="preprocess_ms"):
        e2e.summarize_config("cloud", rows, e2e.LINKS["4G"], {}, busy_w=3.5, speedup=30)
    with pytest.raises(ValueError, match="unknown configuration"):
        e2e.device_compute_ms("edge", _rows("local")[0])


def test_agreement_is_per_photo_when_two_photos_share_a_label():
    # the 20 foolbox photos hold two jeeps; the teacher answers differently on each
    camera = [
        {"path": "c/jeep/a.jpg", "label": "jeep", "label_id": 609},
        {"path": "c/jeep/b.jpg", "label": "jeep", "label_id": 609},
        {"path": "c/yurt/c.jpg", "label": "yurt", "label_id": 915},
    ]
    teacher = {"c/jeep/a.jpg": 609, "c/jeep/b.jpg": 656, "c/yurt/c.jpg": 915}
    frames = [  # the device's frames start mid-pass, as in a real run (frame 4 = file 1)
        {"frame_number": 4, "label": "jeep", "top1": 656},
        {"frame_number": 5, "label": "yurt", "top1": 915},
        {"frame_number": 6, "label": "jeep", "top1": 609},
        {"frame_number": 7, "label": "yurt", "top1": 1},  # label/file mismatch: not guessed
    ]
    named = e2e.attach_paths(frames, camera)
    assert [f.get("path") for f in named] == ["c/jeep/b.jpg", "c/yurt/c.jpg", "c/jeep/a.jpg", None]
    rows = [{**f, "status": "ok", "preprocess_ms": 1.0, "head_ms": 1.0, "encode_ms": 1.0,
             "bytes": 10, "capture_ms": 0.0, "latency_ms": 5.0, "correct": True}
            for f in named]  # fmt: skip
    s = e2e.summarize_config("split", rows, e2e.LINKS["WiFi"], teacher, busy_w=1.0, speedup=30)
    assert s["top1_agreement_with_teacher"] == pytest.approx(1.0)  # 3 of 3 named frames


def test_cloud_client_times_the_preprocess_it_does(tmp_path, free_port):
    """The real cloud pair over ZeroMQ on 127.0.0.1 (no shaping): the client's rows carry the
    224² preprocess as device work, and its latency starts before it, at frame pickup."""
    import sys

    from benchmarks.harness import processes
    from training.data.photos import shipped_photos

    photos = [p for p in shipped_photos(("foolbox",)) if p.label is not None][:2]
    if len(photos) < 2:
        pytest.skip("foolbox photos not installed")
    images = tmp_path / "images.json"
    images.write_text(json.dumps([{"path": str(p.path), "label": str(p.label),
                                   "label_id": int(p.label)} for p in photos]))  # fmt: skip
    out = tmp_path / "frames.jsonl"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cloud = [sys.executable, "-m", "benchmarks.e2e_cloud"]
    with processes.process_group() as procs:
        processes.start(procs, [*cloud, "server", "--endpoint", endpoint], tmp_path / "server.log")
        client = processes.start(procs, [*cloud, "client", "--endpoint", endpoint, "--images",
                                         str(images), "--out", str(out)],
                                 tmp_path / "client.log")  # fmt: skip
        assert client.wait(timeout=180) == 0, (tmp_path / "client.log").read_text()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in rows] == [str(p.path) for p in photos]
    for r in rows:
        assert r["preprocess_ms"] > 0 and r["encode_ms"] > 0
        assert r["latency_ms"] >= r["preprocess_ms"] + r["encode_ms"] + r["rtt_ms"] - 1e-6
        assert r["top1"] == r["label_id"]  # the float teacher gets these two photos right
    s = e2e.summarize_config("cloud", rows, e2e.LINKS["WiFi"], {}, busy_w=3.5, speedup=30)
    want = float(np.median([r["preprocess_ms"] + r["encode_ms"] for r in rows]))
    assert s["device_compute_ms_p50"] == pytest.approx(want)
