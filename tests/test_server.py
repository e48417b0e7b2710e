"""The tail server over real ZeroMQ sockets: negotiation, inference, batching, errors.

Every test starts a real ``TailServer`` (ROUTER on an ephemeral TCP port or an ipc path,
Prometheus on an ephemeral HTTP port) with real TorchScript tails, and talks to it with
DEALER sockets. Replies are checked against the tail run directly in torch.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import urllib.request
from collections.abc import Iterator
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
from server.client import ClientTimeout, ServerError, TailClient
from wire import protocol
from wire.codecs import CODEC_NAMES
from wire.quant import QuantParams


@pytest.fixture
def tails(tmp_path: Path):
    a = make_tail(tmp_path / "a", "model-a", seed=1)
    b = make_tail(tmp_path / "b", "model-b", chw=(2, 4, 4), num_classes=3, bits=4, seed=2)
    return {"model-a": a, "model-b": b}


@pytest.fixture
def server(tails, tmp_path: Path):
    cfg = server_config([tails["model-a"][0], tails["model-b"][0]], tmp_path)
    with TailServer(cfg) as srv:
        yield srv


def _client(srv: TailServer, **kw) -> TailClient:
    return TailClient(srv.endpoints[0], timeout_s=10.0, **kw)


@contextlib.contextmanager
def _sessions(srv: TailServer, n: int, model_id: str) -> Iterator[list[TailClient]]:
    """``n`` clients, each with a session open on ``model_id``, closed however the test ends."""
    clients = [_client(srv) for _ in range(n)]
    try:
        for c in clients:
            c.hello(hello_for(model_id))
        yield clients
    finally:
        for c in clients:
            c.close()


# ----------------------------------------------------------------------------- happy path


def test_hello_frame_reply_matches_the_tail_run_directly(server, tails) -> None:
    _, module = tails["model-a"]
    rng = np.random.default_rng(0)
    with _client(server) as c:
        welcome = c.hello(hello_for("model-a"))
        assert isinstance(welcome, protocol.Welcome) and welcome.session_id > 0
        caps = welcome.capabilities
        assert caps["max_payload"] == 1 << 20 and caps["max_batch"] == 32
        # every registered codec, the cloud partition's picture codec included
        assert set(caps["codecs"]) == set(CODEC_NAMES)
        assert set(CODEC_NAMES) >= {"jpeg", "png", "zstd", "raw", "rans", "zstd_dict", "jpeg_image"}
        assert (
            caps["num_classes"] == NUM_CLASSES
            and caps["protocol_version"] == protocol.PROTOCOL_VERSION
        )
        for _ in range(5):
            payload, x = random_payload(rng)
            reply = c.infer(payload)
            ids, scores = expected_topk(module, x, NUM_CLASSES)
            assert list(reply.top_ids) == ids
            assert np.allclose(reply.top_scores, scores, atol=1e-5)
            assert abs(sum(reply.top_scores) - 1.0) < 1e-4  # softmax over all 5 classes
            assert reply.labels == tuple(f"class-{i}" for i in ids)
            assert reply.session_id == welcome.session_id
            assert reply.compute_us > 0 and reply.decode_us >= 0 and reply.queue_us >= 0
            assert reply.load.queue_depth == 0


def test_two_models_with_their_own_shape_and_bits(server, tails) -> None:
    _, module_b = tails["model-b"]
    quant4 = QuantParams(scale=0.1, zero_point=0, bits=4)
    rng = np.random.default_rng(1)
    with _client(server) as c:
        c.hello(hello_for("model-b", chw=(2, 4, 4), quant=quant4, codec="zstd"))
        payload, x = random_payload(rng, chw=(2, 4, 4), quant=quant4, codec="zstd")
        reply = c.infer(payload)
        ids, _ = expected_topk(module_b, x, 3)
        assert list(reply.top_ids) == ids and len(reply.labels) == 3


def test_ping_answers_pong_with_load(server) -> None:
    with _client(server) as c:
        c.hello(hello_for("model-a"))
        c.infer(random_payload(np.random.default_rng(2))[0])
        pong = c.ping()
        assert isinstance(pong, protocol.Pong) and pong.session_id == c.session_id
        assert pong.load.compute_ms > 0  # the tail has run once
        assert 0.0 <= pong.load.utilization <= 1.0


def test_many_clients_tcp_and_ipc_at_once(tails, tmp_path: Path) -> None:
    ipc = f"ipc://{tmp_path}/tail.sock"
    cfg = server_config(
        [tails["model-a"][0]], tmp_path, server={"bind": ["tcp://127.0.0.1:*", ipc]}
    )
    _, module = tails["model-a"]
    failures: list[str] = []
    with TailServer(cfg) as srv:
        assert srv.endpoints[1] == ipc

        def device(index: int) -> None:
            rng = np.random.default_rng(100 + index)
            endpoint = srv.endpoints[index % 2]
            with TailClient(endpoint, timeout_s=20) as c:
                c.hello(hello_for("model-a", device_name=f"dev-{index}"))
                for _ in range(10):
                    payload, x = random_payload(rng)
                    reply = c.infer(payload)
                    if list(reply.top_ids) != expected_topk(module, x, NUM_CLASSES)[0]:
                        failures.append(f"device {index}: wrong answer")

        threads = [threading.Thread(target=device, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert failures == []
        assert srv.metrics.value("splitfit_replies_total", {"model": "model-a"}) == 80
        assert len(srv.sessions) == 8


def test_batching_happens_under_load_and_is_visible_in_metrics(tmp_path: Path) -> None:
    directory, module = make_tail(tmp_path / "slow", "slow-model", slow=True)
    cfg = server_config([directory], tmp_path, batching={"max_batch": 16, "max_wait_us": 100_000})
    rng = np.random.default_rng(3)
    with TailServer(cfg) as srv:
        with _sessions(srv, 16, "slow-model") as clients:
            expected = {}
            for round_ in range(3):
                # Everything slow (encoding, the reference run) happens before sending, so
                # the 16 frames reach the server together, as from 16 busy cameras.
                frames = []
                for i, c in enumerate(clients):
                    payload, x = random_payload(rng)
                    frame = c.frame(payload)
                    expected[(i, frame.seq)] = expected_topk(module, x, NUM_CLASSES)[0]
                    frames.append(frame)
                for c, frame in zip(clients, frames, strict=True):
                    c.send(frame)
                for i, c in enumerate(clients):
                    reply = c.receive()
                    assert isinstance(reply, protocol.Reply), reply
                    assert list(reply.top_ids) == expected[(i, reply.seq)], f"round {round_}"
        counts = srv.metrics.batch_size_counts("slow-model")
        assert sum(counts.values()) >= 1
        assert sum(n for bound, n in counts.items() if bound > 1) >= 1, counts
        batches = srv.metrics.value("splitfit_batch_size_count", {"model": "slow-model"})
        assert batches < 48  # 48 requests went through in fewer tail invocations
        # The same figures over the Prometheus HTTP endpoint.
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
        assert 'splitfit_batch_size_count{model="slow-model"}' in text
        assert 'splitfit_requests_total{type="frame"} 48.0' in text
        assert "splitfit_latency_seconds_bucket" in text


def test_batching_off_runs_one_request_per_call(tmp_path: Path) -> None:
    directory, _ = make_tail(tmp_path / "m", "m")
    cfg = server_config([directory], tmp_path, batching={"max_batch": 1})
    rng = np.random.default_rng(4)
    with TailServer(cfg) as srv:
        with _sessions(srv, 6, "m") as clients:
            for c in clients:
                c.send(c.frame(random_payload(rng)[0]))
            for c in clients:
                assert isinstance(c.receive(), protocol.Reply)
        counts = srv.metrics.batch_size_counts("m")
        assert counts[1] == 6 and sum(counts.values()) == 6


# ----------------------------------------------------------------------------- error classes


def _expect_error(answer, code: protocol.ErrorCode) -> protocol.ErrorMsg:
    assert isinstance(answer, protocol.ErrorMsg), answer
    assert answer.code == code, answer
    return answer


@pytest.mark.parametrize(
    ("hello_kwargs", "code", "fragment"),
    [
        ({"model_id": "no-such-model"}, protocol.ErrorCode.UNKNOWN_MODEL, "no-such-model"),
        ({"chw": (4, 6, 7)}, protocol.ErrorCode.BAD_TENSOR, "input_chw"),
        ({"codec": "webp"}, protocol.ErrorCode.UNSUPPORTED_CODEC, "webp"),
        (
            {"codec": "jpeg", "codec_params": {"quality": 0}},
            protocol.ErrorCode.UNSUPPORTED_CODEC,
            "quality",
        ),
        (
            {"codec": "raw", "codec_params": {"level": 3}},
            protocol.ErrorCode.UNSUPPORTED_CODEC,
            "level",
        ),
        ({"quant": QuantParams(0.05, 0, bits=4)}, protocol.ErrorCode.UNSUPPORTED_CODEC, "8-bit"),
    ],
)
def test_bad_hello_gets_a_typed_error(server, hello_kwargs, code, fragment) -> None:
    kwargs = {"model_id": "model-a", **hello_kwargs}
    with _client(server) as c:
        err = _expect_error(c.request(hello_for(**kwargs)), code)
        assert fragment in err.message
    assert server.metrics.value("splitfit_errors_total", {"code": code.name}) == 1


def test_hello_dtype_other_than_int8_is_bad_tensor(server) -> None:
    from dataclasses import replace

    with _client(server) as c:
        _expect_error(
            c.request(replace(hello_for("model-a"), dtype="float32")), protocol.ErrorCode.BAD_TENSOR
        )


def test_wrong_protocol_version_is_version_mismatch(server) -> None:
    with _client(server) as c:
        for parts in (
            [bytes([protocol.PROTOCOL_VERSION + 1, protocol.MsgType.PING, 0, 0]) + bytes(16)],
            [bytes([0]) + protocol.encode_message(hello_for("model-a"))[0][1:]],
        ):
            c.send_parts(parts)
            _expect_error(c.receive(), protocol.ErrorCode.VERSION_MISMATCH)


@pytest.mark.parametrize(
    "parts",
    [
        [b""],
        [b"\x01"],
        [b"\x01\x03\x00\x00" + bytes(10)],  # FRAME header cut short
        [b"\x01\x63\x00\x00"],  # unknown type
        [b"\x01\x01\x00\x00\x00\x00\x00\x05{bad}"],  # HELLO with invalid JSON
        [b"\x01\x05\x00\x00" + bytes(16), b"extra part"],
        protocol.encode_message(
            protocol.Reply(1, 1, (1,), (0.5,), ("x",), 1, 1, 1)
        ),  # server-only message
        protocol.encode_message(protocol.Welcome(1, {})),
    ],
    ids=[
        "empty",
        "one-byte",
        "short-frame",
        "unknown-type",
        "bad-json",
        "extra-part",
        "reply",
        "welcome",
    ],
)
def test_malformed_messages_get_malformed(server, parts) -> None:
    with _client(server) as c:
        c.send_parts(parts)
        _expect_error(c.receive(), protocol.ErrorCode.MALFORMED)
        c.hello(hello_for("model-a"))  # the session still works afterwards
        assert isinstance(c.infer(random_payload(np.random.default_rng(5))[0]), protocol.Reply)


def test_frame_without_session_or_with_someone_elses_session(server) -> None:
    with _client(server) as owner, _client(server) as intruder:
        owner.hello(hello_for("model-a"))
        payload = random_payload(np.random.default_rng(6))[0]
        err = _expect_error(
            intruder.request(protocol.Frame(12345, 7, 0, payload)),
            protocol.ErrorCode.UNKNOWN_SESSION,
        )
        assert err.seq == 7 and err.session_id == 12345
        # Guessing the owner's session id from another identity does not work either.
        _expect_error(
            intruder.request(protocol.Frame(owner.session_id, 8, 0, payload)),
            protocol.ErrorCode.UNKNOWN_SESSION,
        )
        assert isinstance(owner.infer(payload), protocol.Reply)


def test_payload_over_the_negotiated_size(server) -> None:
    payload = random_payload(np.random.default_rng(7))[0]  # 144 bytes raw
    with _client(server) as c:
        welcome = c.hello(hello_for("model-a", max_payload=100))
        assert welcome.capabilities["max_payload"] == 100
        err = _expect_error(c.request(c.frame(payload)), protocol.ErrorCode.PAYLOAD_TOO_LARGE)
        assert "100" in err.message
        # Over the server-wide limit: refused by the parser before anything is allocated.
        header = bytearray(protocol.encode_message(c.frame(b"x"))[0])
        struct.pack_into(">I", header, 20, (1 << 20) + 1)
        c.send_parts([bytes(header), b"x"])
        _expect_error(c.receive(), protocol.ErrorCode.PAYLOAD_TOO_LARGE)


def test_undecodable_payload_is_bad_tensor(server) -> None:
    with _client(server) as c:
        c.hello(hello_for("model-a", codec="png"))
        err = _expect_error(
            c.request(c.frame(b"\x89PNG not really")), protocol.ErrorCode.BAD_TENSOR
        )
        assert err.session_id == c.session_id
        c.hello(hello_for("model-a", codec="raw"))
        _expect_error(c.request(c.frame(bytes(10))), protocol.ErrorCode.BAD_TENSOR)  # wrong length
        good, _ = random_payload(np.random.default_rng(8))
        assert isinstance(c.infer(good), protocol.Reply)


def test_overloaded_when_the_queue_is_full(tmp_path: Path) -> None:
    directory, _ = make_tail(tmp_path / "slow", "slow-model", slow=True)
    cfg = server_config(
        [directory], tmp_path, batching={"max_batch": 1, "max_queue": 2, "max_wait_us": 0}
    )
    rng = np.random.default_rng(9)
    with TailServer(cfg) as srv, _client(srv) as c:
        c.hello(hello_for("slow-model"))
        for _ in range(12):
            c.send(c.frame(random_payload(rng)[0]))
        answers = [c.receive() for _ in range(12)]
        overloaded = [a for a in answers if isinstance(a, protocol.ErrorMsg)]
        assert overloaded and all(a.code == protocol.ErrorCode.OVERLOADED for a in overloaded)
        assert sum(isinstance(a, protocol.Reply) for a in answers) >= 2


def test_client_error_message_is_counted_not_answered(server) -> None:
    with _client(server) as c:
        c.send(protocol.ErrorMsg(protocol.ErrorCode.INTERNAL, "device hiccup"))
        with pytest.raises(ClientTimeout):
            c.receive(timeout_s=0.5)
    assert server.metrics.value("splitfit_drops_total", {"reason": "client_error"}) == 1


# ----------------------------------------------------------------------------- lifecycle


def test_stop_leaves_no_threads_and_frees_the_port(tails, tmp_path: Path) -> None:
    import os

    before = {t.ident for t in threading.enumerate()}
    fds_before = len(os.listdir("/proc/self/fd"))
    cfg = server_config([tails["model-a"][0]], tmp_path)
    srv = TailServer(cfg).start()
    endpoint, metrics_port = srv.endpoints[0], srv.metrics_port
    with _client(srv) as c:
        c.hello(hello_for("model-a"))
        c.infer(random_payload(np.random.default_rng(10))[0])
    srv.stop()

    def leaked() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.ident not in before]

    with contextlib.suppress(AssertionError):  # the threads left are shown just below
        wait_until(lambda: not leaked(), 5)
    assert leaked() == []
    assert len(os.listdir("/proc/self/fd")) <= fds_before  # sockets, pipes, HTTP all closed
    # The ports are free again: a new ROUTER can bind the same endpoint.
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.linger = 0
    s.bind(endpoint)
    s.close()
    ctx.term()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1)


def test_metrics_can_be_disabled(tails, tmp_path: Path) -> None:
    cfg = server_config([tails["model-a"][0]], tmp_path, metrics={"enabled": False})
    with TailServer(cfg) as srv, _client(srv) as c:
        assert srv.metrics_port is None
        c.hello(hello_for("model-a"))
        assert isinstance(c.infer(random_payload(np.random.default_rng(11))[0]), protocol.Reply)
        # still counted in-process
        assert srv.metrics.value("splitfit_replies_total", {"model": "model-a"}) == 1


def test_bind_failure_is_a_clear_start_error(tails, tmp_path: Path) -> None:
    from server.app import ServerStartError

    cfg = server_config([tails["model-a"][0]], tmp_path)
    with TailServer(cfg) as first:
        taken = first.endpoints[0]
        cfg2 = server_config([tails["model-a"][0]], tmp_path, server={"bind": [taken]})
        with pytest.raises(ServerStartError, match="cannot bind"):
            TailServer(cfg2).start()


def test_session_replaced_by_a_new_hello(server) -> None:
    with _client(server) as c:
        first = c.hello(hello_for("model-a")).session_id
        second = c.hello(hello_for("model-a")).session_id
        assert first != second
        payload = random_payload(np.random.default_rng(12))[0]
        _expect_error(
            c.request(protocol.Frame(first, 1, 0, payload)), protocol.ErrorCode.UNKNOWN_SESSION
        )
        assert isinstance(c.infer(payload), protocol.Reply)
    assert len(server.sessions) == 1


def test_server_error_exception_carries_the_code(server) -> None:
    with _client(server) as c, pytest.raises(ServerError) as info:
        c.hello(hello_for("nope"))
    assert info.value.error.code == protocol.ErrorCode.UNKNOWN_MODEL


def test_chw_and_quant_fixture_agree() -> None:
    """Guard the helpers themselves: the payload decodes to the shape the tail expects."""
    payload, x = random_payload(np.random.default_rng(13))
    assert x.shape == CHW and len(payload) == CHW[0] * CHW[1] * CHW[2] * QUANT.bits // 8


def test_tails_are_warmed_up_at_batch_1_and_max_batch_before_listening(
    tails, tmp_path: Path
) -> None:
    import io
    import json

    from wire.logjson import log_to

    stream = io.StringIO()
    cfg = server_config([tails["model-a"][0]], tmp_path, batching={"max_batch": 6})
    with log_to(stream, "info"), TailServer(cfg):
        pass
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    names = [e["event"] for e in events]
    warm = events[names.index("model_warm")]
    assert warm["batch_sizes"] == [1, 6] and warm["model_id"] == "model-a"
    assert names.index("model_warm") < names.index("listening") < names.index("stopped")
    cold = server_config([tails["model-a"][0]], tmp_path, compute={"warmup": False})
    stream = io.StringIO()
    with log_to(stream, "info"), TailServer(cold):
        pass
    assert "model_warm" not in stream.getvalue()
