"""benchmarks.harness: configs written from the daemons' config types parse back to the same
objects; the process supervisor reports a dying peer, a timeout and a bad exit with the log;
a benchmark's result files are written whole or not at all."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support.waiting import wait_until

from benchmarks import demo
from benchmarks.harness import configs, processes
from benchmarks.harness.errors import BenchError
from benchmarks.harness.results import write_results
from device.config import DeviceConfig, HeadSection, load_config
from server.config import ModelTable, ServerSection, config_from_dict
from server.config import load_config as load_server_config
from wire.schema import replace


def test_demo_device_config_parses_back_to_the_same_object(tmp_path: Path) -> None:
    paths = demo.DemoPaths(tmp_path)
    built = demo.demo_device_config(paths, "tcp://127.0.0.1:5555", tmp_path / "h.tflite", 7)
    path = demo.write_device_config(paths, "tcp://127.0.0.1:5555", tmp_path / "h.tflite", 7)
    loaded = load_config(path)
    assert replace(loaded, path=None) == built
    assert loaded.device.max_frames == 7 and loaded.power.monitor == "sim"
    assert loaded.camera.params == {
        "path": str(paths.camera), "loop": True, "labels": True, "fps": 0.0,
    }  # fmt: skip


def test_demo_server_config_parses_back_to_the_same_config(tmp_path: Path) -> None:
    paths = demo.DemoPaths(tmp_path)
    tables = demo.demo_server_tables(paths, "tcp://127.0.0.1:5555")
    path = demo.write_server_config(paths, "tcp://127.0.0.1:5555")
    data = {k: configs.to_data(v) for k, v in tables.items()}
    assert load_server_config(path) == config_from_dict(data, tmp_path)
    cfg = load_server_config(path)
    assert cfg.server.bind == ("tcp://127.0.0.1:5555",)
    assert cfg.batching.max_batch == 8 and cfg.metrics.enabled is False
    assert cfg.models[0].tail == paths.tail_dir / "tail.pt"


def test_strings_and_nested_tables_survive_the_encoder(tmp_path: Path) -> None:
    odd = 'a "quoted" \\ path\twith\nnewline, ünïcode and \x7f'
    built = DeviceConfig(
        heads=(
            HeadSection(name="a b", model=tmp_path / "x y.tflite", num_threads=3),
            HeadSection(name=odd, model=tmp_path / "z.tflite", kind="local"),
        ),
        camera=demo.demo_device_config(
            demo.DemoPaths(tmp_path), "tcp://h:1", tmp_path / "h", 1
        ).camera,
    )
    built = replace(
        built, camera=replace(built.camera, params={**built.camera.params, "nested": {"k": [1.5]}})
    )
    path = configs.write_device_config(tmp_path / "device.toml", built, "two\nlines")
    text = path.read_text()
    assert text.startswith("# two\n# lines\n")
    assert replace(load_config(path), path=None) == built


def test_only_values_off_their_default_are_written() -> None:
    text = configs.server_toml(
        {"server": ServerSection(bind=("ipc:///tmp/x",)), "models": (ModelTable(path=Path("m")),)}
    )
    assert text == '[server]\nbind = ["ipc:///tmp/x"]\n\n[[models]]\npath = "m"\n'


def test_a_config_the_daemon_would_refuse_is_not_written(tmp_path: Path) -> None:
    from server.config import ConfigError

    target = tmp_path / "server.toml"
    with pytest.raises(ConfigError, match="no tails configured"):
        configs.write_server_config(target, {"server": ServerSection(bind=("tcp://h:1",))})
    assert not target.exists()
    with pytest.raises(TypeError, match="cannot write"):
        configs.dumps({"x": object()})


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_wait_exit_names_the_peer_that_died_and_quotes_its_log(tmp_path: Path) -> None:
    with processes.process_group() as procs:
        peer_log, main_log = tmp_path / "peer.log", tmp_path / "main.log"
        peer = processes.Watched(
            processes.start(procs, _py("print('peer gave up'); raise SystemExit(4)"), peer_log),
            "the-peer",
            peer_log,
        )
        main = processes.Watched(
            processes.start(procs, _py("import time; time.sleep(60)"), main_log), "main", main_log
        )
        with pytest.raises(BenchError, match="the-peer exited with 4:\npeer gave up"):
            processes.wait_exit(main, 30, others=[peer])
    assert main.proc.poll() is not None  # the group stopped what was still running


def test_wait_exit_times_out_and_reports_a_bad_exit(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    with processes.process_group() as procs:
        slow = processes.Watched(
            processes.start(procs, _py("import time; time.sleep(60)"), log), "slow", log
        )
        with pytest.raises(BenchError, match=r"slow did not finish 3 frames in 0 s"):
            processes.wait_exit(slow, 0.3, what=" 3 frames")
        bad = processes.Watched(
            processes.start(procs, _py("print('boom'); raise SystemExit(2)"), log), "bad", log
        )
        with pytest.raises(BenchError, match="bad exited with 2:\nboom"):
            processes.wait_exit(bad, 30)


def test_stop_requires_a_clean_exit_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    ignores = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(5)); "
        "print('up', flush=True); time.sleep(60)"
    )
    with processes.process_group() as procs:
        w = processes.Watched(processes.start(procs, _py(ignores), log), "daemon", log)
        wait_until(lambda: "up" in log.read_text(), 30, what="its handler installed")
        with pytest.raises(BenchError, match="daemon exited with 5 after SIGTERM"):
            processes.stop(w)


def test_wait_listening_returns_the_servers_event(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    code = (
        "import json, time; print('noise'); "
        "print(json.dumps({'event': 'listening', 'bind': ['x']}), flush=True); time.sleep(60)"
    )
    with processes.process_group() as procs:
        w = processes.Watched(processes.start(procs, _py(code), log), "server", log)
        assert processes.wait_listening(w, 30)["bind"] == ["x"]
        dead = processes.Watched(processes.start(procs, _py("raise SystemExit(1)"), log), "s2", log)
        with pytest.raises(BenchError, match="s2 exited with 1 before listening"):
            processes.wait_listening(dead, 30)


def test_write_results_writes_json_markdown_and_plot_atomically(tmp_path: Path) -> None:
    out = tmp_path / "new" / "results"  # created on the way
    seen: list[tuple[str, dict]] = []

    def markdown(result: dict, path: Path) -> None:
        seen.append((path.name, json.loads((path.with_suffix(".json")).read_text())))
        path.write_text(f"# {result['x']}\n")

    def plot(result: dict, path: Path) -> None:
        path.write_bytes(b"png")

    md = write_results(out, "bench", {"x": 1.5}, markdown, plot)
    assert md == out / "bench.md" and md.read_text() == "# 1.5\n"
    assert seen == [("bench.md", {"x": 1.5})]  # the JSON is whole before the report is made
    assert (out / "bench.json").read_text() == '{\n  "x": 1.5\n}\n'
    assert (out / "bench.png").read_bytes() == b"png"
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md", "bench.png"]

    write_results(out, "noplot", {"x": 2}, markdown)
    assert not (out / "noplot.png").exists()


def test_write_results_keeps_the_old_json_when_the_result_cannot_be_encoded(
    tmp_path: Path,
) -> None:
    (tmp_path / "bench.json").write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        write_results(tmp_path, "bench", {"x": object()}, lambda r, p: None)
    assert (tmp_path / "bench.json").read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # no temp file left
