"""The ``local`` partition (issue #22): the whole model on the board, answering without a server.

Real pieces only: the full-int8 TFLite model is converted by tensorflow in a subprocess (the
test helper's ``build-head --pool``), the daemon is the ``splitfit-device`` process and the
server the ``splitfit-server`` process with a TorchScript tail. The server is SIGKILLed
mid-stream and restarted on the same port.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from support.device_side import (
    cached_head,
    metrics_rows,
    start_daemon,
    start_server,
    write_config,
)
from support.waiting import wait_until

from device.config import ConfigError, HeadSection, parse_config
from device.head import HeadError
from device.local import LocalModel

WINDOW = 4


@pytest.fixture(scope="module")
def local_head(tmp_path_factory) -> tuple[Path, Path]:
    return cached_head(tmp_path_factory.getbasetemp(), name="full", channels=5, pool=True)


@pytest.fixture(scope="module")
def split_head(tmp_path_factory) -> tuple[Path, Path]:
    return cached_head(tmp_path_factory.getbasetemp())


def test_local_model_top_k_matches_the_interpreter(local_head):
    from ai_edge_litert.interpreter import Interpreter

    tfl, manifest = local_head
    m = LocalModel(HeadSection("full", tfl, manifest, kind="local"))
    it = Interpreter(model_path=str(tfl))
    it.allocate_tensors()
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.integers(0, 256, (1, *m.head.input_hw, 3), dtype=np.uint8)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        codes = it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1)
        ans = m.classify(x, k=3)
        assert len(ans.top_ids) == 3
        assert codes[ans.top_ids[0]] == codes.max()
        assert list(codes[list(ans.top_ids)]) == sorted(codes[list(ans.top_ids)], reverse=True)
        assert ans.labels == tuple(f"cls{i}" for i in ans.top_ids)
        assert 0 < ans.top_scores[0] <= 1 and ans.top_scores[0] >= ans.top_scores[-1]


def test_a_split_head_is_refused_as_a_local_partition(split_head):
    tfl, manifest = split_head
    with pytest.raises(HeadError, match=r"logits as \(1, 1, 1, classes\)"):
        LocalModel(HeadSection("h", tfl, manifest, kind="local"))


def test_config_kind_and_fallback_keys(tmp_path):
    base = {"heads": [{"model": "a.tflite", "kind": "local"}, {"model": "b.tflite"}]}
    cfg = parse_config(base, tmp_path)
    assert [h.kind for h in cfg.heads] == ["local", "split"]
    assert cfg.policy.local_fallback is True
    cfg = parse_config({**base, "policy": {"local_fallback": False}}, tmp_path)
    assert cfg.policy.local_fallback is False
    with pytest.raises(ConfigError, match=r"heads.*kind"):
        parse_config({"heads": [{"model": "a.tflite", "kind": "edge"}]}, tmp_path)


def test_daemon_with_only_a_local_partition_needs_no_server(local_head, tmp_path, free_port):
    tfl, _ = local_head
    port = free_port()  # nothing listens here
    heads = f'[[heads]]\nname = "full"\nkind = "local"\nmodel = "{tfl}"\n'
    cfg = write_config(
        tmp_path / "d.toml", tfl, port, f'[metrics]\npath = "{tmp_path / "m.jsonl"}"\n',
        heads=heads,
    )  # fmt: skip
    d = start_daemon(cfg, "--frames", "20", "--summary", str(tmp_path / "s.json"))
    assert d.p.wait(60) == 0, d.err[-10:]
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["answered_local"] == 20 and s["replied"] == 0 and s["sessions"] == 0
    est = s["partition_estimates"]["full"]  # why: the estimates behind the choice
    assert est["latency_ms"] > 0 and est["measured_latency_ms"] > 0 and est["energy_mj"] is None
    rows = [json.loads(ln) for ln in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert sorted(r["seq"] for r in rows) == list(range(1, 21))
    assert all(r["status"] == "ok" and r["head"] == "full" and r["bytes"] == 0 for r in rows)
    assert all(r["top1_label"] == f"cls{r['top1']}" for r in rows)


# ---------------------------------------------------------------------- with the real server


@pytest.fixture(scope="module")
def tail_dir(split_head, tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from support.server_side import tail_for_head

    return tail_for_head(split_head[1], tmp_path_factory.getbasetemp() / "tail-local")


def _wait_rows(path: Path, pred, timeout: float, n: int = 1) -> list[dict]:
    """The metrics rows matching ``pred``, once there are at least ``n`` of them."""

    def matching() -> list[dict]:
        rows = [r for r in metrics_rows(path) if pred(r)]
        return rows if len(rows) >= n else []

    return wait_until(matching, timeout, what=f"{n} matching row(s) in {path.name}")


def _summary(event: dict) -> bool:
    return event.get("event") == "summary"


def _split_ok(row: dict) -> bool:
    return row["head"] == "split" and row["status"] == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("fallback", [True, False])
def test_server_killed_local_answers_every_frame_then_back_to_split(
    fallback, split_head, local_head, tail_dir, tmp_path, free_port
):
    port = free_port()
    metrics = tmp_path / "m.jsonl"
    server = start_server(tmp_path, port, tail_dir)
    heads = (
        f'[[heads]]\nname = "split"\nmodel = "{split_head[0]}"\n'
        f'[[heads]]\nname = "full"\nkind = "local"\nmodel = "{local_head[0]}"\n'
    )
    cfg = write_config(
        tmp_path / "d.toml", split_head[0], port,
        f"window = {WINDOW}\n[camera.params]\nwidth = 64\nheight = 48\nfps = 50.0\n"
        f'[metrics]\npath = "{metrics}"\n[policy]\nswitching = false\n'
        f"local_fallback = {str(fallback).lower()}\n"
        "[logging]\nsummary_interval_s = 0.1\n",  # counters to wait on
        camera='[camera]\nsource = "synthetic"\n',
        heads=heads,
    )  # fmt: skip
    d = start_daemon(cfg, "--summary", str(tmp_path / "s.json"))
    try:
        assert d.wait_for(lambda e: e.get("event") == "ready", 30, "err"), d.err[-10:]
        _wait_rows(metrics, _split_ok, 10, n=20)
        server.kill()  # SIGKILL: no goodbye, the daemon finds out from missing pongs
        t_kill = time.monotonic()
        # The outage lasts until the daemon has visibly lived through it (its summary
        # counters): frames answered on the board, or dropped without the fallback.
        if fallback:
            outage = d.wait_for(lambda e: _summary(e) and e["answered_local"] > 40, 30, "err")
        else:
            outage = d.wait_for(lambda e: _summary(e) and e["dropped_outage"] > 30, 30, "err")
        assert outage is not None, d.err[-10:]
        server = start_server(tmp_path, port, tail_dir)
        t_up = time.monotonic()
        # Back on the split: frames captured after the restart answered by the server.
        _wait_rows(metrics, lambda r: _split_ok(r) and r["capture_mono"] > t_up, 10, n=10)
        assert d.stop(signal.SIGTERM) == 0
    finally:
        d.kill()
        server.stop()
    rows = metrics_rows(metrics)
    s = json.loads((tmp_path / "s.json").read_text())
    assert sorted(r["seq"] for r in rows) == list(range(1, s["frames_submitted"] + 1))
    unanswered = [r for r in rows if r["status"] != "ok"]
    during = [r for r in rows if t_kill < r["capture_mono"] < t_up]
    if not fallback:  # the old behaviour: the outage drops frames
        assert s["dropped_outage"] > 20 and s["answered_local"] == 0
        return
    # Only frames already handed to the link when the server died (at most the window)
    # go unanswered; every frame taken during the outage is answered on the board.
    assert len(unanswered) <= WINDOW, unanswered
    assert all(r["status"] == "lost" for r in unanswered)
    assert s["dropped_outage"] == 0
    local = [r for r in during if r["head"] == "full"]
    assert len(local) > 30 and all(r["status"] == "ok" for r in local)
    assert all(r["top1_label"] == f"cls{r['top1']}" for r in local)
    assert s["answered_local"] == len([r for r in rows if r["head"] == "full"])
    events = [e.get("event") for e in d.events("err")]
    assert "local_fallback" in events and "local_fallback_end" in events
    assert s["chosen_partition"] == "split" and s["active_head"] == "split"
