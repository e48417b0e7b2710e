"""device.toml validation: every mistake is a ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
MIN = {"heads": [{"model": "h/head.tflite"}]}


def _parse(data: dict, base: Path = Path("/cfg")):
    return parse_config(data, base)


def test_example_config_parses_with_paths_resolved_against_its_directory():
    cfg = load_config(ROOT / "examples" / "device.toml")
    assert cfg.heads[0].model == ROOT / "examples" / "heads/rb1/head.tflite"
    assert cfg.heads[0].manifest == ROOT / "examples" / "heads/rb1/head.json"
    assert cfg.heads[0].num_threads == 2
    assert cfg.metrics.path == Path("/var/log/splitfit/frames.jsonl")  # writable under systemd
    assert cfg.server.endpoints == ("tcp://127.0.0.1:5555",)
    assert cfg.camera.source == "synthetic" and cfg.camera.params["fps"] == 15.0


def test_minimal_config_gets_defaults_and_manifest_next_to_model():
    cfg = _parse(MIN)
    assert cfg.heads[0].manifest == Path("/cfg/h/head.json")
    assert cfg.heads[0].name == "head"
    assert cfg.server.window == 4 and cfg.server.outage == "drop"
    assert cfg.power.monitor == "none" and cfg.metrics.path is None
    assert cfg.gpio.pin_factory is None


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({**MIN, "bogus": 1}, "bogus"),
        ({**MIN, "server": {"windw": 3}}, "server.windw"),
        ({**MIN, "camera": {"params": {}, "sorce": "x"}}, "camera.sorce"),
        ({"heads": [{"model": "a.tflite", "threads": 2}]}, "heads[0].threads"),
        ({**MIN, "server": {"window": 0}}, "server.window"),
        ({**MIN, "server": {"window": "4"}}, "server.window"),
        ({**MIN, "server": {"window": True}}, "server.window"),
        ({**MIN, "server": {"outage": "keep"}}, "server.outage"),
        ({**MIN, "server": {"endpoints": ["localhost:5555"]}}, "server.endpoints"),
        (
            {**MIN, "server": {"reconnect_min_s": 2.0, "reconnect_max_s": 1.0}},
            "server.reconnect_max_s",
        ),
        ({**MIN, "camera": {"source": "webcam"}}, "camera.source"),
        ({**MIN, "codec": {"bits": 9}}, "codec.bits"),
        ({**MIN, "codec": {"name": "gif"}}, "codec.name"),
        ({**MIN, "power": {"monitor": "ina219"}}, "power.monitor"),
        ({**MIN, "logging": {"level": "loud"}}, "logging.level"),
        ({**MIN, "policy": {"hysteresis": 1.5}}, "policy.hysteresis"),
        ({**MIN, "metrics": {"backups": -1}}, "metrics.backups"),
        ({**MIN, "gpio": {"pin_factory": "rpigpio"}}, "gpio.pin_factory"),
        ({**MIN, "device": {"max_frames": -5}}, "device.max_frames"),
        ({"heads": [{"name": "a"}]}, "heads[0].model"),
        ({"heads": []}, "heads"),
        ({}, "heads"),
        (
            {"heads": [{"model": "a.tflite", "name": "x"}, {"model": "b.tflite", "name": "x"}]},
            "duplicate name",
        ),
    ],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        _parse(data)


def test_ints_accepted_for_floats_and_single_endpoint_string():
    cfg = _parse({**MIN, "server": {"heartbeat_s": 2, "endpoints": "tcp://10.0.0.2:5555"}})
    assert cfg.server.heartbeat_s == 2.0 and isinstance(cfg.server.heartbeat_s, float)
    assert cfg.server.endpoints == ("tcp://10.0.0.2:5555",)


def test_unreadable_and_invalid_toml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nwindow = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_camera_folder_path_resolves_against_config_dir(tmp_path):
    cfg = parse_config(
        {**MIN, "camera": {"source": "folder", "params": {"path": "photos"}}}, tmp_path
    )
    assert cfg.camera.params["path"] == str(tmp_path / "photos")
