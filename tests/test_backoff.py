"""The one backoff policy (hardware.backoff) and the three loops that use it.

Time is injected everywhere (a fake clock, explicit ``now``): nothing here sleeps.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import pytest
from support.waiting import FakeClock

from device.capture import CameraSupervisor
from device.config import ConfigError, ServerSection, parse_config
from hardware.backoff import BACKOFF_KEYS, Backoff, BackoffError, RetryTimer
from hardware.camera import Backoff as CameraBackoff
from hardware.camera import CameraError, open_camera

MIN = {"heads": [{"model": "h/head.tflite"}]}


def test_delays_grow_by_factor_and_stop_at_the_cap() -> None:
    b = Backoff(initial=0.5, maximum=10.0, factor=3.0)
    assert [b.delay(k) for k in range(5)] == pytest.approx([0.5, 1.5, 4.5, 10.0, 10.0])
    assert list(Backoff(0.1, 1.0, 2.0, max_attempts=3).delays()) == pytest.approx([0.1, 0.2, 0.4])
    assert list(Backoff(max_attempts=0).delays()) == []
    assert Backoff(0.2, 5.0, factor=1.0).delay(50) == 0.2


def test_a_link_down_for_days_does_not_overflow() -> None:
    b = Backoff(0.1, 5.0)
    assert b.delay(10**9) == 5.0 and math.isfinite(b.delay(2000))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"initial": 0}, "initial delay must be > 0"),
        ({"initial": 2.0, "maximum": 1.0}, "below initial"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"max_attempts": -1}, "max_attempts must be >= 0"),
        ({"initial": "1"}, "initial must be a number"),
        ({"max_attempts": 1.5}, "max_attempts"),
    ],
)
def test_bad_settings_name_the_key(kwargs, needle) -> None:
    with pytest.raises(BackoffError, match=needle):
        Backoff(**kwargs)
    with pytest.raises(CameraError, match=needle):  # the camera's own error type
        CameraBackoff(**kwargs)


def test_one_table_shape_everywhere() -> None:
    b = Backoff.from_mapping({"initial": 1, "maximum": 8, "factor": 4, "max_attempts": 2}, "x")
    assert b == Backoff(1, 8, 4, 2) and tuple(f.name for f in fields(b)) == BACKOFF_KEYS
    with pytest.raises(BackoffError, match=r"x: unknown reconnect key 'delay'"):
        Backoff.from_mapping({"delay": 1}, "x")
    with pytest.raises(BackoffError, match="must be a table"):
        Backoff.from_mapping(3, "x")
    assert ServerSection(reconnect_min_s=0.05, reconnect_max_s=0.5).reconnect == Backoff(0.05, 0.5)


def test_retry_timer_schedules_on_the_injected_clock() -> None:
    clock = FakeClock()
    timer = RetryTimer(Backoff(0.5, 2.0), clock=clock)
    assert timer.due() and timer.remaining() == 0.0
    assert timer.failed() == 0.5 and not timer.due() and timer.remaining() == 0.5
    clock.advance(0.49)
    assert not timer.due()
    clock.advance(0.01)
    assert timer.due()
    assert [timer.failed(), timer.failed(), timer.failed()] == [1.0, 2.0, 2.0]
    assert timer.failures == 4 and timer.next_delay == 2.0
    timer.succeeded()
    assert timer.due() and timer.failures == 0 and timer.next_delay == 0.5
    assert timer.failed(now=5.0) == 0.5 and timer.remaining(now=5.25) == 0.25


def test_supervisor_recreates_a_missing_camera_on_the_backoff_schedule(tmp_path: Path) -> None:
    photos = tmp_path / "photos"  # absent: every open fails
    data = {
        **MIN,
        "camera": {
            "source": "folder",
            "params": {"path": str(photos)},
            "reconnect": {"initial": 1.0, "maximum": 4.0},
        },
    }
    sup = CameraSupervisor(parse_config(data, tmp_path).camera)
    assert not sup._ensure_started(100.0) and sup.health.failures == 1
    assert not sup._ensure_started(100.9) and sup.health.failures == 1  # not due: no attempt
    assert not sup._ensure_started(101.0) and sup.health.failures == 2  # due: tried, failed
    assert not sup._ensure_started(102.9) and sup.health.failures == 2  # now 2 s apart
    assert not sup._ensure_started(103.0) and sup.health.failures == 3
    assert sup._retry.next_delay == 4.0
    photos.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(photos / "a.png")
    try:
        assert sup._ensure_started(107.0) and sup.health.ok
        assert sup._retry.next_delay == 1.0  # a success starts over at initial
        assert sup.source is not None and sup.source.backoff.maximum == 4.0  # same policy
    finally:
        sup.stop()


def test_device_config_reads_the_reconnect_table() -> None:
    cfg = parse_config(
        {**MIN, "camera": {"reconnect": {"initial": 0.2, "maximum": 3, "max_attempts": 4}}},
        Path("/cfg"),
    )
    assert cfg.camera.reconnect == Backoff(0.2, 3.0, 2.0, 4)
    assert parse_config(MIN, Path("/cfg")).camera.reconnect == Backoff()
    for camera, key in [
        ({"reconnect": {"initial": 2.0, "maximum": 1.0}}, "camera.reconnect.maximum"),
        ({"reconnect": {"delay": 1}}, "camera.reconnect.delay"),
        ({"reconnect": {"factor": 0.5}}, "camera.reconnect.factor"),
        ({"params": {"reconnect": {"initial": 1}}}, "camera.params.reconnect"),
        ({"retry_min_s": 0.5}, "camera.retry_min_s"),
    ]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config({**MIN, "camera": camera}, Path("/cfg"))


def test_open_camera_takes_a_policy_or_a_table() -> None:
    policy = Backoff(0.1, 0.2)
    assert open_camera("synthetic", reconnect=policy).backoff is policy
    cam = open_camera("synthetic", reconnect={"initial": 0.3, "maximum": 0.6})
    assert (cam.backoff.initial, cam.backoff.maximum) == (0.3, 0.6)
