"""CURVE on and off, allowlisted vs unknown keys, plaintext clients against a CURVE server."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import zmq.auth
from support.server_side import hello_for, make_tail, random_payload, server_config
from support.waiting import wait_until

from server.app import ServerStartError, TailServer
from server.auth import AuthError, generate_keypair, load_allowlist
from server.cli import main as cli_main
from server.client import ClientTimeout, CurveClientKeys, TailClient
from wire.logjson import log_to
from wire.protocol import Hello, Reply


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    root = tmp_path / "keys"
    assert cli_main(["keys", "--out", str(root / "server"), "server"]) == 0
    assert cli_main(["keys", "--out", str(root / "clients"), "camera-1"]) == 0
    assert cli_main(["keys", "--out", str(root / "strangers"), "intruder"]) == 0
    return root


def _curve(keys: Path, client: str, folder: str) -> CurveClientKeys:
    public, secret = zmq.auth.load_certificate(keys / folder / f"{client}.key_secret")
    server_public, _ = zmq.auth.load_certificate(keys / "server" / "server.key")
    return CurveClientKeys(public=public, secret=secret, server_public=server_public)


def _curve_server(tmp_path: Path, keys: Path, server_key: str = "server.key_secret") -> TailServer:
    """A server with CURVE on, its key pair ``keys/server/<server_key>``, not started."""
    directory, _ = make_tail(tmp_path / "m", "m")
    cfg = server_config(
        [directory],
        tmp_path,
        auth={
            "enabled": True,
            "server_secret_key": str(keys / "server" / server_key),
            "client_keys_dir": str(keys / "clients"),
        },
    )
    return TailServer(cfg)


def _unanswered(client: TailClient, msg: Hello) -> None:
    """Send ``msg`` and get nothing back within the client's timeout.

    Bounded send: once the client's CURVE handshake has failed, its DEALER has no peer until
    the next reconnect, and a plain send would block forever (ZeroMQ's mute state). A send
    that cannot even be queued reaches the server no more than an unanswered one.
    """
    client.socket.sndtimeo = int(client.timeout_s * 1000)
    with contextlib.suppress(zmq.Again):
        client.send(msg)
    with pytest.raises(ClientTimeout):
        client.receive()


def test_keys_cli_writes_a_pair_with_a_private_secret(keys: Path) -> None:
    secret = keys / "clients" / "camera-1.key_secret"
    public, sec = zmq.auth.load_certificate(secret)
    assert len(public) == 40 and len(sec) == 40
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert zmq.auth.load_certificate(keys / "clients" / "camera-1.key")[0] == public
    # exactly the pair, no temp directory left behind
    assert sorted(p.name for p in (keys / "clients").iterdir()) == [
        "camera-1.key",
        "camera-1.key_secret",
    ]


def test_keys_cli_refuses_to_overwrite(keys: Path, capsys) -> None:
    assert cli_main(["keys", "--out", str(keys / "clients"), "camera-1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    with pytest.raises(AuthError, match="invalid key name"):
        generate_keypair(keys, "../escape")


def test_allowlist_holds_only_public_keys_of_the_directory(keys: Path) -> None:
    allowed = load_allowlist(keys / "clients")
    assert allowed == {zmq.auth.load_certificate(keys / "clients" / "camera-1.key")[0]}


def test_curve_allowlisted_client_is_served(tmp_path: Path, keys: Path) -> None:
    with _curve_server(tmp_path, keys) as srv:
        assert srv.public_key == zmq.auth.load_certificate(keys / "server" / "server.key")[0]
        with TailClient(srv.endpoints[0], curve=_curve(keys, "camera-1", "clients")) as c:
            welcome = c.hello(hello_for("m"))
            assert welcome.capabilities["curve"] is True
            assert isinstance(c.infer(random_payload(np.random.default_rng(0))[0]), Reply)
        assert srv.metrics.value("splitfit_auth_failures_total", {"reason": "unauthorized"}) == 0


def test_unknown_key_is_rejected_and_logged(tmp_path: Path, keys: Path) -> None:
    stream = io.StringIO()
    with log_to(stream, "info"), _curve_server(tmp_path, keys) as srv:
        intruder = _curve(keys, "intruder", "strangers")
        with TailClient(srv.endpoints[0], curve=intruder, timeout_s=1.0) as c:
            _unanswered(c, hello_for("m"))
        wait_until(
            lambda: (
                srv.metrics.value("splitfit_auth_failures_total", {"reason": "unauthorized"}) >= 1
            )
        )
        assert srv.metrics.value("splitfit_requests_total", {"type": "hello"}) == 0
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    rejected = [e for e in events if e["event"] == "auth_rejected"]
    assert rejected and rejected[0]["client_public_key"] == intruder.public.decode()
    assert any(
        e["event"] == "auth_handshake_failed" and e["reason"] == "unauthorized" for e in events
    )


def test_plaintext_client_cannot_talk_to_a_curve_server(tmp_path: Path, keys: Path) -> None:
    with _curve_server(tmp_path, keys) as srv:
        with TailClient(srv.endpoints[0], timeout_s=1.0) as c:
            _unanswered(c, hello_for("m"))
        assert srv.metrics.value("splitfit_requests_total", {"type": "hello"}) == 0
        wait_until(
            lambda: (
                sum(
                    srv.metrics.value("splitfit_auth_failures_total", {"reason": r})
                    for r in ("handshake_failed", "protocol_mismatch", "unauthorized")
                )
                >= 1
            )
        )


def test_client_with_the_wrong_server_key_gets_nothing(tmp_path: Path, keys: Path) -> None:
    wrong = _curve(keys, "camera-1", "clients")
    wrong.server_public = zmq.auth.load_certificate(keys / "strangers" / "intruder.key")[0]
    with _curve_server(tmp_path, keys) as srv:
        with TailClient(srv.endpoints[0], curve=wrong, timeout_s=1.0) as c:
            _unanswered(c, hello_for("m"))
        assert srv.metrics.value("splitfit_requests_total", {"type": "hello"}) == 0


def test_curve_off_serves_plaintext(tmp_path: Path) -> None:
    directory, _ = make_tail(tmp_path / "m", "m")
    with TailServer(server_config([directory], tmp_path)) as srv, TailClient(srv.endpoints[0]) as c:
        assert c.hello(hello_for("m")).capabilities["curve"] is False


def test_missing_key_material_fails_start_clearly(tmp_path: Path, keys: Path) -> None:
    server = _curve_server(tmp_path, keys, server_key="server.key")  # public half only
    with pytest.raises(ServerStartError, match="no secret key"):
        server.start()
