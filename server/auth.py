"""CURVE security: key pairs, the server's ZAP authenticator and a public-key allowlist.

Why an allowlist and not "any client with CURVE": encryption alone stops eavesdropping,
but the tail server spends real compute per frame, so only devices whose public key an
operator dropped into ``client_keys_dir`` may talk to it. Rejections are logged (JSON) and
counted (``splitfit_auth_failures_total``) by the callback, not by parsing pyzmq's logs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class AuthError(ValueError):
    """Missing or unreadable key material."""


@dataclass(frozen=True)
class KeyPairPaths:
    public: Path
    secret: Path


def generate_keypair(out_dir: Path | str, name: str) -> KeyPairPaths:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` (secret, mode 0600) into out_dir.

    Files are created in a temporary directory next to the target and moved in with
    ``os.replace``, so a crash never leaves half a key pair; existing keys are not
    overwritten (replacing a key silently would lock devices out).
    """
    if not name or "/" in name or name.startswith("."):
        raise AuthError(f"invalid key name {name!r}: use a plain file name such as 'server'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise AuthError(f"{path} already exists; refusing to overwrite a key")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
    try:
        tmp_public, tmp_secret = zmq.auth.create_certificates(tmp, name)
        os.chmod(tmp_secret, 0o600)
        os.replace(tmp_secret, secret)
        os.replace(tmp_public, public)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return KeyPairPaths(public=public, secret=secret)


def load_secret_key(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a ``.key_secret`` certificate file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot load server secret key {path}: {exc}") from None
    if not secret:
        raise AuthError(f"{path} holds no secret key (is it the public .key file?)")
    return public, secret


def load_allowlist(directory: Path) -> set[bytes]:
    """All client public keys (z85) found in ``*.key`` files of a directory."""
    if not directory.is_dir():
        raise AuthError(f"client_keys_dir {directory} is not a directory")
    keys: set[bytes] = set()
    for path in sorted(directory.glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise AuthError(f"cannot load client key {path}: {exc}") from None
        keys.add(public)
    return keys


class _AllowlistProvider:
    """ZAP credentials callback: accept a client iff its public key is allowlisted."""

    def __init__(self, allowed: set[bytes], on_reject: Callable[[str], None]) -> None:
        self.allowed = allowed
        self.on_reject = on_reject

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.allowed:
            return True
        self.on_reject(key.decode("ascii", "replace"))
        return False


class CurveGuard:
    """Owns the ThreadAuthenticator and applies CURVE server options to a socket."""

    def __init__(
        self,
        context: zmq.Context,
        secret_key_file: Path,
        client_keys_dir: Path,
        on_reject: Callable[[str], None],
    ) -> None:
        self.public_key, self.secret_key = load_secret_key(secret_key_file)
        self.allowed = load_allowlist(client_keys_dir)
        self._provider = _AllowlistProvider(self.allowed, on_reject)
        self._auth = ThreadAuthenticator(context)
        self._started = False
        self._context = context

    def start(self) -> None:
        self._auth.start()
        self._started = True
        self._auth.configure_curve_callback(domain="*", credentials_provider=self._provider)

    def secure(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret_key
        socket.curve_publickey = self.public_key
        socket.curve_server = True

    def stop(self) -> None:
        if self._started:
            self._auth.stop()
            self._started = False
