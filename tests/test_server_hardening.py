"""Issue #18: what a hostile or careless client could do to the server, and what it may not.

Every test talks to a real ``TailServer`` (or a real ``splitfit-server`` subprocess) over
real ZeroMQ sockets, with real TorchScript tails. ``PoisonTail`` (support.server_side) is a
real tail that yields NaN for one kind of frame and raises for another, as a production
tail can on inputs it was never trained for; honest frames are checked against the tail run
on that frame alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zmq
from support.server_side import (
    CHW,
    NUM_CLASSES,
    QUANT,
    expected_topk,
    hello_for,
    make_tail,
    random_payload,
    server_config,
)
from support.waiting import wait_until

from server.app import TailServer
from server.client import ClientTimeout, TailClient
from wire import protocol
from wire.codecs import FeatureCodec
from wire.errors import MalformedBody

REPO = Path(__file__).resolve().parents[1]


def _quant_split(scale: float, zero_point: int) -> dict:
    """tail.json ``split`` as training export writes it: with the quantization trained on."""
    hi = scale * (127 - zero_point)
    return {
        "backbone": "tiny",
        "point": "test",
        "quant": {"scale": scale, "zero_point": zero_point, "output_range": [0.0, hi]},
    }


def _hello_scale(scale: float, zero_point: int = -3, **kw) -> protocol.Hello:
    """A HELLO with any scale the wire can carry (QuantParams refuses absurd ones locally)."""
    return replace(hello_for(**kw), scale=scale, zero_point=zero_point)


def _client(srv: TailServer, **kw) -> TailClient:
    return TailClient(srv.endpoints[0], timeout_s=10.0, **kw)


def _poison_payload(kind: str) -> bytes:
    """A frame PoisonTail cannot compute: 'nan' -> NaN logits, 'raise' -> the call raises."""
    q = np.zeros(CHW, dtype=np.int8)
    q[0 if kind == "nan" else 1, 0, 0] = 127
    return FeatureCodec(CHW, QUANT, "raw").encode_int8(q, layout="CHW")


def _honest_payload(rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """A random frame kept clear of PoisonTail's trigger (the top code at (0, 0))."""
    while True:
        payload, x = random_payload(rng)
        if x[0, 0, 0] < 6.0 and x[1, 0, 0] < 6.0:
            return payload, x


def _assert_correct(reply: object, module, x: np.ndarray) -> None:
    assert isinstance(reply, protocol.Reply), reply
    ids, scores = expected_topk(module, x, NUM_CLASSES)
    assert list(reply.top_ids) == ids
    assert np.allclose(reply.top_scores, scores, atol=1e-5)


# ============================================================== 1. HELLO quantization


def test_hello_scale_outside_the_manifests_quantization_is_refused(tmp_path: Path) -> None:
    directory, _ = make_tail(
        tmp_path / "q", "quant-model", manifest_overrides={"split": _quant_split(0.05, -3)}
    )
    cfg = server_config([directory], tmp_path)
    with TailServer(cfg) as srv, _client(srv) as c:
        for scale in (1e300, 1e6, 0.05 * 4.5, 0.05 / 4.5, 1e-30):
            answer = c.request(_hello_scale(scale, model_id="quant-model"))
            assert isinstance(answer, protocol.ErrorMsg), (scale, answer)
            assert answer.code is protocol.ErrorCode.BAD_TENSOR
            assert "scale" in answer.message and "tail.json" in answer.message
        for scale in (0.05, 0.05 * 1.01, 0.05 * 3.9, 0.05 / 3.9):
            answer = c.request(_hello_scale(scale, model_id="quant-model"))
            assert isinstance(answer, protocol.Welcome), scale


def test_hello_with_a_huge_scale_is_refused_even_without_manifest_quantization(
    tmp_path: Path,
) -> None:
    directory, _ = make_tail(tmp_path / "t", "tiny-model")  # tail.json without split.quant
    cfg = server_config([directory], tmp_path)
    with TailServer(cfg) as srv, _client(srv) as c:
        for scale in (1e300, 1e30, 1e5):
            answer = c.request(_hello_scale(scale, 0))
            assert (
                isinstance(answer, protocol.ErrorMsg)
                and answer.code is protocol.ErrorCode.BAD_TENSOR
            ), scale
        answer = c.request(_hello_scale(10.0, 0))
        assert isinstance(answer, protocol.Welcome)


def test_registry_refuses_a_manifest_with_a_nonsense_quantization(tmp_path: Path) -> None:
    import torch

    from server.registry import RegistryError, load_tail

    for bad in (0.0, -1.0, "0.05"):
        d, _ = make_tail(
            tmp_path / f"bad{bad}", manifest_overrides={"split": _quant_split(0.05, -3)}
        )
        data = json.loads((d / "tail.json").read_text())
        data["split"]["quant"]["scale"] = bad
        (d / "tail.json").write_text(json.dumps(data))
        with pytest.raises(RegistryError, match=r"split\.quant\.scale"):
            load_tail(d / "tail.pt", d / "tail.json", torch.device("cpu"))


# ============================================================== 1. failure isolation


def _poison_server(tmp_path: Path, max_wait_us: int):
    directory, module = make_tail(tmp_path / "p", "tiny-model", poison=True, seed=3)
    cfg = server_config(
        [directory], tmp_path, batching={"max_batch": 8, "max_wait_us": max_wait_us}
    )
    return TailServer(cfg), module


@pytest.fixture
def poison(tmp_path: Path):
    # A long batching window, so frames sent together are computed together.
    srv, module = _poison_server(tmp_path, 400_000)
    with srv:
        yield srv, module


@pytest.fixture
def poison_fast(tmp_path: Path):
    srv, module = _poison_server(tmp_path, 20_000)
    with srv:
        yield srv, module


def _mixed_batch(srv: TailServer, module, kind: str) -> None:
    rng = np.random.default_rng(4)
    with _client(srv) as honest, _client(srv) as hostile:
        honest.hello(hello_for())
        hostile.hello(hello_for(device_name="hostile"))
        frames = [_honest_payload(rng) for _ in range(3)]
        honest.send(honest.frame(frames[0][0], seq=1))
        hostile.send(hostile.frame(_poison_payload(kind), seq=77))
        for i, (payload, _) in enumerate(frames[1:], start=2):
            honest.send(honest.frame(payload, seq=i))
        answers = {}
        for _ in range(3):
            msg = honest.receive()
            answers[msg.seq] = msg
        for seq, (_, x) in enumerate(frames, start=1):
            _assert_correct(answers[seq], module, x)
        bad = hostile.receive()
        assert isinstance(bad, protocol.ErrorMsg) and bad.seq == 77
        expected = protocol.ErrorCode.BAD_TENSOR if kind == "nan" else protocol.ErrorCode.INTERNAL
        assert bad.code is expected, bad
    model = "tiny-model"
    # All four shared one tail call (else this test would not test isolation).
    assert srv.metrics.value("splitfit_batch_size_count", {"model": model}) >= 1
    assert srv.metrics.batch_size_counts(model)[4] == 1


def test_nan_from_one_frame_fails_only_that_frame(poison) -> None:
    srv, module = poison
    _mixed_batch(srv, module, "nan")


def test_a_raising_batch_is_rerun_frame_by_frame(poison) -> None:
    srv, module = poison
    _mixed_batch(srv, module, "raise")
    rescued = srv.metrics.value(
        "splitfit_isolated_total", {"model": "tiny-model", "outcome": "rescued"}
    )
    failed = srv.metrics.value(
        "splitfit_isolated_total", {"model": "tiny-model", "outcome": "failed"}
    )
    assert (rescued, failed) == (3, 1)


def test_isolation_helper_contract() -> None:
    """The function the local batcher (and any other tail backend) runs batches through."""
    from server.isolation import ItemFailure, run_isolated

    calls: list[list[int]] = []

    def run(items: list[int]) -> list[float]:
        calls.append(list(items))
        if 13 in items:
            raise ValueError("13 is unlucky")
        return [float("nan") if i == 7 else i * 2.0 for i in items]

    def problem(result: float) -> str | None:
        return None if np.isfinite(result) else "not finite"

    out = run_isolated([1, 7, 13, 4], run, problem)
    assert out[0] == 2.0 and out[3] == 8.0
    assert isinstance(out[1], ItemFailure) and out[1].kind == "invalid"
    assert isinstance(out[2], ItemFailure) and out[2].kind == "raised"
    assert "13 is unlucky" in out[2].reason
    assert calls == [[1, 7, 13, 4], [1], [7], [13], [4]]
    calls.clear()
    # A NaN in a good batch: only that item is re-run alone.
    out = run_isolated([1, 7, 4], run, problem)
    assert out[0] == 2.0 and out[2] == 8.0 and isinstance(out[1], ItemFailure)
    assert calls == [[1, 7, 4], [7]]


# ============================================================== target: two-client fuzz


def test_fuzz_hostile_and_honest_clients_sharing_batches(poison_fast) -> None:
    """The honest client gets a correct REPLY for every frame, whatever the other one does."""
    srv, module = poison_fast
    n_honest = 200
    rng = np.random.default_rng(5)
    frames = [_honest_payload(rng) for _ in range(n_honest)]
    stop = threading.Event()
    hostile_sent = {"frames": 0, "hellos": 0, "garbage": 0}
    hostile_problems: list[str] = []

    def hostile_main() -> None:
        hrng = np.random.default_rng(6)
        with _client(srv) as h:
            h.hello(hello_for(device_name="hostile"))
            seq = 0
            while not stop.is_set():
                seq += 1
                kind = seq % 6
                if kind == 0:  # bad scales, on a second socket so the session survives
                    scale = float(10.0 ** hrng.integers(5, 300))
                    with _client(srv) as other:
                        other.send(_hello_scale(scale))
                        answer = other.receive()
                        if not isinstance(answer, protocol.ErrorMsg):
                            hostile_problems.append(f"scale {scale:g} accepted: {answer!r}"[:200])
                    hostile_sent["hellos"] += 1
                    continue
                if kind in (1, 2):
                    payload = _poison_payload("nan" if kind == 1 else "raise")
                elif kind == 3:  # random bytes of the right length: often poison too
                    payload = hrng.bytes(len(_poison_payload("nan")))
                elif kind == 4:  # the wrong length: does not decode
                    payload = hrng.bytes(int(hrng.integers(1, 400)))
                else:  # not even a message
                    h.send_parts([hrng.bytes(int(hrng.integers(1, 60)))])
                    hostile_sent["garbage"] += 1
                    continue
                h.send(h.frame(payload, seq=seq))
                hostile_sent["frames"] += 1
                with_drain = h.socket.poll(0)
                while with_drain:
                    h.socket.recv_multipart()
                    with_drain = h.socket.poll(0)
                time.sleep(0.002)

    thread = threading.Thread(target=hostile_main, daemon=True)
    thread.start()
    answers: dict[int, object] = {}
    try:
        with _client(srv) as honest:
            honest.hello(hello_for(device_name="honest"))
            for start in range(0, n_honest, 4):  # bursts of 4: the batcher mixes them in
                for seq in range(start + 1, min(start + 5, n_honest + 1)):
                    honest.send(honest.frame(frames[seq - 1][0], seq=seq))
                while len(answers) < min(start + 4, n_honest):
                    msg = honest.receive(timeout_s=20.0)
                    answers[msg.seq] = msg
    finally:
        stop.set()
        thread.join(30)
    assert len(answers) == n_honest
    assert not hostile_problems, hostile_problems[:3]
    for seq, (_, x) in enumerate(frames, start=1):
        _assert_correct(answers[seq], module, x)
    # The hostile traffic did reach the batches the honest frames were in.
    assert hostile_sent["frames"] > 50 and hostile_sent["hellos"] > 5
    rescued = srv.metrics.value(
        "splitfit_isolated_total", {"model": "tiny-model", "outcome": "rescued"}
    )
    assert rescued > 0, "no honest frame shared a failed batch: the fuzz did not fuzz"
    assert srv.metrics.value("splitfit_errors_total", {"code": "BAD_TENSOR"}) > 10
    assert srv.metrics.value("splitfit_errors_total", {"code": "INTERNAL"}) > 5


# ============================================================== 5. PING checks the session


def test_ping_without_a_session_gets_unknown_session(tmp_path: Path) -> None:
    directory, _ = make_tail(tmp_path / "t")
    srv = TailServer(server_config([directory], tmp_path))
    with srv, _client(srv) as owner, _client(srv) as stranger:
        welcome = owner.hello(hello_for())
        for session_id in (0, 1, 12345, 0xFFFFFFFF, welcome.session_id):
            answer = stranger.request(protocol.Ping(session_id, 9, 42))
            assert isinstance(answer, protocol.ErrorMsg), (session_id, answer)
            assert answer.code is protocol.ErrorCode.UNKNOWN_SESSION
            assert answer.session_id == session_id and answer.seq == 9
        # The owner with a wrong id is refused too; with its own id it gets a PONG.
        answer = owner.request(protocol.Ping(welcome.session_id ^ 1, 3, 42))
        assert (
            isinstance(answer, protocol.ErrorMsg)
            and answer.code is protocol.ErrorCode.UNKNOWN_SESSION
        )
        pong = owner.request(protocol.Ping(welcome.session_id, 4, 42))
        assert isinstance(pong, protocol.Pong) and pong.ts_us == 42 and pong.seq == 4


# ============================================================== 2. HELLO string bounds


def _hello_body(**changes: object) -> list[bytes]:
    parts = protocol.encode_message(hello_for())
    body = json.loads(parts[0][8:])
    body.update(changes)
    raw = json.dumps(body).encode()
    return [parts[0][:4] + len(raw).to_bytes(4, "big") + raw]


@pytest.mark.parametrize("field", ["model_id", "dtype", "codec", "device_name", "token_id"])
def test_every_hello_string_is_bounded(field: str) -> None:
    from wire.errors import FieldTooLong
    from wire.protocol import HELLO_LIMITS

    limit = HELLO_LIMITS[field]
    ok = {"model_id": "m", "dtype": "int8", "codec": "raw"}.get(field, "d")
    at_limit = ok + "x" * (limit - len(ok))
    msg = protocol.decode_message(_hello_body(**{field: at_limit}))
    assert getattr(msg, field) == at_limit
    with pytest.raises(FieldTooLong) as caught:
        protocol.decode_message(_hello_body(**{field: at_limit + "x"}))
    assert isinstance(caught.value, MalformedBody)
    assert field in str(caught.value) and str(limit) in str(caught.value)
    assert len(str(caught.value)) < 200  # the refusal does not echo the string
    hello = protocol.Hello(**{**hello_for().__dict__, field: "y" * (limit + 1)})
    with pytest.raises(ValueError, match=field):
        protocol.encode_message(hello)


def test_hello_codec_params_are_bounded() -> None:
    from wire.protocol import HELLO_LIMITS

    protocol.decode_message(_hello_body(codec_params={"quality": 20}))
    for params in (
        {f"k{i}": 1 for i in range(HELLO_LIMITS["codec_params"] + 1)},
        {"k" * (HELLO_LIMITS["codec_param_key"] + 1): 1},
        {"quality": "q" * (HELLO_LIMITS["codec_param_value"] + 1)},
        {"quality": [1] * 5000},
        {"quality": {"nested": 1}},
    ):
        with pytest.raises(MalformedBody, match="codec_params"):
            protocol.decode_message(_hello_body(codec_params=params))


def test_server_answers_an_over_long_device_name_with_a_short_typed_error(tmp_path: Path) -> None:
    directory, _ = make_tail(tmp_path / "t")
    with TailServer(server_config([directory], tmp_path)) as srv, _client(srv) as c:
        c.send_parts(_hello_body(device_name="n" * 60_000))
        answer = c.receive()
        assert isinstance(answer, protocol.ErrorMsg) and answer.code is protocol.ErrorCode.MALFORMED
        assert "FieldTooLong" in answer.message and "device_name" in answer.message
        assert len(answer.message) < 200
        assert len(srv.sessions) == 0


# ============================================================== 2. log amplification, end to end


def _start_server_process(tmp_path: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    directory, _ = make_tail(tmp_path / "t")
    config = tmp_path / "server.toml"
    config.write_text(
        f'[server]\nbind = ["tcp://127.0.0.1:*"]\nlinger_ms = 200\n'
        f'[compute]\nthreads = 1\n[log]\nlevel = "info"\n'
        f'[[models]]\npath = "{directory}"\n'
    )
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    log.close()

    def listening() -> re.Match | None:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        return re.search(r'"endpoints":\["(tcp://[^"]+)"', log_path.read_text(errors="replace"))

    try:
        found = wait_until(listening, 120, interval=0.05, what="the server's listening line")
    except AssertionError:
        proc.kill()
        raise
    return proc, found.group(1)


def _flood_then_barrier(endpoint: str, messages: list[list[bytes]]) -> int:
    """Send everything on one DEALER, then a valid HELLO; wait for its WELCOME, then a PONG.

    One DEALER's messages are handled in order, so the WELCOME proves every hostile message
    before it was processed (and logged). The server logs ``session_opened`` after sending
    the WELCOME, synchronously in the same loop, so the PONG to a PING sent after it proves
    that line is written too: the log is complete, with no guessed sleep. Returns the hostile
    bytes sent.
    """
    sent = 0
    with TailClient(endpoint, timeout_s=60.0) as c:
        for parts in messages:
            c.send_parts(parts)
            sent += sum(len(p) for p in parts)
            while c.socket.poll(0):  # keep reading so no reply is dropped at the HWM
                c.socket.recv_multipart()
        c.send(hello_for())
        while not isinstance(welcome := c.receive(timeout_s=60.0), protocol.Welcome):
            pass
        c.send(protocol.Ping(welcome.session_id, 1, 0))
        while not isinstance(c.receive(timeout_s=60.0), protocol.Pong):
            pass
        return sent


def test_hostile_input_adds_at_most_one_log_byte_per_hundred(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    proc, endpoint = _start_server_process(tmp_path, log_path)
    try:
        _flood_then_barrier(endpoint, [])  # serving, and its own start-up lines written
        before = log_path.stat().st_size
        # The evidence: 500 HELLOs with ~60 kB device names (30 MB).
        hellos = [_hello_body(device_name=f"{i:05d}" + "n" * 60_000) for i in range(500)]
        sent = _flood_then_barrier(endpoint, hellos)
        grown = log_path.stat().st_size - before
        print(f"60 kB HELLOs: {grown} log bytes for {sent} hostile bytes ({grown / sent:.2e})")
        assert sent > 30_000_000
        assert grown / sent <= 0.01, f"{grown} log bytes for {sent} hostile bytes"

        # Small hostile messages of the kinds a device sends: frames and pings for sessions
        # that do not exist, garbage, bad scales. 4 kB payloads (a JPEG bottleneck's size).
        rng = np.random.default_rng(7)
        mixed: list[list[bytes]] = []
        for i in range(6000):
            kind = i % 4
            if kind == 0:
                mixed.append(protocol.encode_message(protocol.Frame(i + 1, i, 0, rng.bytes(4096))))
            elif kind == 1:
                mixed.append(protocol.encode_message(protocol.Ping(i + 1, i, 0)))
            elif kind == 2:
                mixed.append([rng.bytes(int(rng.integers(1, 100)))])
            else:
                scale = float(10.0 ** rng.integers(5, 300))
                mixed.append(protocol.encode_message(_hello_scale(scale)))
        before = log_path.stat().st_size
        started = time.monotonic()
        sent = _flood_then_barrier(endpoint, mixed)
        elapsed = time.monotonic() - started
        grown = log_path.stat().st_size - before
        print(f"mixed: {grown} log bytes for {sent} hostile bytes in {elapsed:.1f} s")
        assert grown / sent <= 0.01, (
            f"{grown} log bytes for {sent} hostile bytes in {elapsed:.1f} s"
        )
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0
    for line in log_path.read_text().splitlines():  # hostile input never breaks the format
        assert isinstance(json.loads(line), dict), line[:200]


# ============================================================== 8. the 4 MiB + 4 KiB cliff


def _documented_limit(path: Path) -> int:
    """The threshold the docs state for the default max_payload, in bytes."""
    text = (REPO / path).read_text()
    found = re.search(r"default `max_payload`\s+\(1 MiB\)[^`]*`(\d+) bytes`", text)
    assert found, f"{path} does not state the connection-drop threshold"
    return int(found.group(1))


def _connected(socket: zmq.Socket, monitor: zmq.Socket, timeout_s: float = 10.0) -> None:
    from zmq.utils.monitor import recv_monitor_message

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if monitor.poll(100) and (
            recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
        ):
            return
    raise AssertionError("DEALER did not (re)connect")


def test_oversized_frames_get_an_error_until_maxmsgsize_then_the_connection_drops(
    tmp_path: Path,
) -> None:
    from zmq.utils.monitor import recv_monitor_message

    from server.app import max_message_size

    directory, _ = make_tail(tmp_path / "t")
    cfg = server_config([directory], tmp_path)  # default max_payload: 1 MiB
    limit = max_message_size(cfg.server.max_payload)
    assert limit == 4 * (1 << 20) + 4096
    assert _documented_limit(Path("docs/wire.md")) == limit
    assert _documented_limit(Path("server/README.md")) == limit
    with TailServer(cfg) as srv, _client(srv) as c:
        monitor = c.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
        )
        try:
            _connected(c.socket, monitor)
            c.hello(hello_for())
            for size in ((1 << 20) + 1, limit):  # over max_payload, not over maxmsgsize
                answer = c.request(c.frame(b"\0" * size))
                assert isinstance(answer, protocol.ErrorMsg), size
                assert answer.code is protocol.ErrorCode.PAYLOAD_TOO_LARGE
            for size in (limit + 1, 8 << 20):
                c.send(c.frame(b"\0" * size))
                with pytest.raises(ClientTimeout):
                    c.receive(timeout_s=1.5)
                events = []
                while monitor.poll(2000):
                    events.append(recv_monitor_message(monitor)["event"])
                    if zmq.EVENT_HANDSHAKE_SUCCEEDED in events:
                        break
                assert zmq.EVENT_DISCONNECTED in events, (size, events)
                assert zmq.EVENT_HANDSHAKE_SUCCEEDED in events, "the DEALER reconnects"
                # The same socket works again (a new HELLO: the server forgot the old peer).
                assert isinstance(c.request(hello_for()), protocol.Welcome)
        finally:
            monitor.close(0)
        assert srv.running
