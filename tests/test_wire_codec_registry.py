"""The codec registry: a codec registered in one place is selectable everywhere.

A toy codec (codes XOR a key byte, one byte per code) is registered by a fixture and then
used end to end through the real parts that name codecs: FeatureCodec, a real TailServer
negotiating a HELLO over ZeroMQ and decoding frames, the device config, and the
``splitfit-train`` subcommands' ``--codec`` choices and parameter flags. After the fixture
unregisters it, the same paths refuse it again.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from support.server_side import CHW, NUM_CLASSES, QUANT, expected_topk, hello_for, make_tail
from support.server_side import server_config as tail_server_config

from device.config import ConfigError, parse_config
from server.app import TailServer
from server.client import ServerError, TailClient
from training.cli import build_parser
from training.commands.codec_args import codec_flags, codec_from_args
from training.compressor import CodecConfig
from wire.codecs import (
    CODEC_NAMES,
    CODECS,
    Codec,
    FeatureCodec,
    Param,
    codec_class,
    feature_codec_names,
    normalize_params,
    register_codec,
    unregister_codec,
)
from wire.errors import CodecError
from wire.protocol import ErrorCode
from wire.quant import quantize_float_to_int8


class ToyCodec(Codec):
    """One byte per code, XOR a key: trivially invertible, and not any built-in's bytes."""

    name = "toy"
    lossless = True
    params = MappingProxyType({"key": Param(0x5A, 0, 255, "XOR key")})
    help = "codes XOR a key byte (test only)"

    def encode(self, codes_chw: np.ndarray) -> bytes:
        return (codes_chw.reshape(-1) ^ np.uint8(self.values["key"])).tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) != self.n_values:
            raise CodecError(f"toy payload is {len(data)} bytes, expected {self.n_values}")
        codes = np.frombuffer(data, np.uint8) ^ np.uint8(self.values["key"])
        if codes.size and int(codes.max()) >= 1 << self.bits:
            raise CodecError("toy code out of range")
        return codes.reshape(self.shape_chw)


@pytest.fixture
def toy():
    register_codec(ToyCodec)
    try:
        yield ToyCodec
    finally:
        unregister_codec("toy")


def test_builtin_codecs_are_registered_in_wire_order() -> None:
    wire_order = ("jpeg", "png", "zstd", "raw", "rans", "zstd_dict", "jpeg_image")
    assert tuple(CODEC_NAMES) == wire_order
    assert repr(CODEC_NAMES) == repr(wire_order)  # messages read as before
    assert {n for n, c in CODECS.items() if c.lossless} == set(wire_order) - {"jpeg", "jpeg_image"}
    # the cloud partition's picture codec is not offered for bottlenecks
    assert feature_codec_names() == wire_order[:-1]
    assert codec_class("jpeg").params["quality"].default == 20


def test_registered_codec_is_selectable_and_roundtrips(toy) -> None:
    assert "toy" in CODEC_NAMES and CODEC_NAMES[-1] == "toy" and CODECS["toy"] is toy
    assert normalize_params("toy", None) == {"key": 0x5A}
    with pytest.raises(CodecError, match=r"'key' must be in 0\.\.255"):
        normalize_params("toy", {"key": 256})
    fc = FeatureCodec(CHW, QUANT, "toy", {"key": 3})
    codes = np.arange(np.prod(CHW), dtype=np.uint8).reshape(CHW)
    data = fc.encode_codes(codes)
    assert data == (codes.reshape(-1) ^ 3).tobytes()  # the toy's own bytes, not a built-in's
    assert np.array_equal(fc.decode(data), codes) and fc.lossless
    with pytest.raises(CodecError, match="toy payload"):
        fc.decode(data[:-1])


def test_unregistered_codec_is_refused_again() -> None:
    assert "toy" not in CODEC_NAMES
    with pytest.raises(CodecError, match=r"unknown codec 'toy'; expected one of jpeg, png"):
        FeatureCodec(CHW, QUANT, "toy")


def test_registration_mistakes_are_errors(toy) -> None:
    with pytest.raises(ValueError, match="'toy' is already registered"):
        register_codec(ToyCodec)
    nameless = type("Nameless", (Codec,), {"lossless": True})
    with pytest.raises(ValueError, match="needs a name"):
        register_codec(nameless)
    undecided = type("Undecided", (Codec,), {"name": "undecided"})
    with pytest.raises(ValueError, match="lossless"):
        register_codec(undecided)
    with pytest.raises(KeyError, match="not registered"):
        unregister_codec("nope")
    with pytest.raises(ValueError, match=r"outside 0\.\.9"):
        Param(10, 0, 9)


def test_server_negotiates_and_decodes_a_registered_codec(toy, tmp_path: Path) -> None:
    tail_dir, module = make_tail(tmp_path / "t", "toy-model")
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, size=CHW).astype(np.float32)
    fc = FeatureCodec(CHW, QUANT, "toy", {"key": 0xA5})
    payload = fc.encode_int8(quantize_float_to_int8(x, QUANT), layout="CHW")
    with TailServer(tail_server_config([tail_dir], tmp_path)) as srv:
        with TailClient(srv.endpoints[0], timeout_s=10.0) as c:
            welcome = c.hello(hello_for("toy-model", codec="toy", codec_params={"key": 0xA5}))
            assert "toy" in welcome.capabilities["codecs"]
            reply = c.infer(payload)
        ids, scores = expected_topk(module, fc.decode_float(payload), NUM_CLASSES)
        assert list(reply.top_ids) == ids
        assert np.allclose(reply.top_scores, scores, atol=1e-5)
        unregister_codec("toy")
        try:
            with (
                TailClient(srv.endpoints[0], timeout_s=10.0) as c,
                pytest.raises(ServerError) as err,
            ):
                c.hello(hello_for("toy-model", codec="toy"))
            assert err.value.error.code == ErrorCode.UNSUPPORTED_CODEC
        finally:
            register_codec(ToyCodec)  # the fixture unregisters it


def test_device_config_accepts_a_registered_codec(toy) -> None:
    data = {"heads": [{"model": "h/head.tflite"}], "codec": {"name": "toy"}}
    assert parse_config(data, Path("/cfg")).codec.name == "toy"
    unregister_codec("toy")
    try:
        with pytest.raises(ConfigError, match=r"codec\.name"):
            parse_config(data, Path("/cfg"))
    finally:
        register_codec(ToyCodec)


@pytest.mark.parametrize("command", ["train", "bottlefit", "search"])
def test_training_commands_offer_a_registered_codec_and_its_flags(toy, command) -> None:
    args = build_parser().parse_args([command, "--codec", "toy", "--key", "7"])
    assert codec_from_args(args, 4) == CodecConfig("toy", 4, {"key": 7})
    assert (
        "--key" in codec_flags(args)
        and codec_flags(args)[codec_flags(args).index("--key") + 1] == "7"
    )
    # the command's JPEG default is not "given" to a codec without a quality
    args = build_parser().parse_args([command, "--codec", "toy"])
    assert codec_from_args(args, 8) == CodecConfig("toy", 8, {})


@pytest.mark.parametrize("command", ["train", "bottlefit", "search"])
def test_training_commands_refuse_an_unregistered_codec(command, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--codec", "toy"])
    assert "invalid choice: 'toy'" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "quality"), [("train", 20), ("bottlefit", 50), ("search", 20)])
def test_training_commands_map_codec_flags_one_way(command, quality) -> None:
    parse = build_parser().parse_args
    assert codec_from_args(parse([command]), 8) == CodecConfig("jpeg", 8, {"quality": quality})
    assert codec_from_args(parse([command, "--codec", "zstd"]), 2) == CodecConfig("zstd", 2, {})
    got = codec_from_args(parse([command, "--codec", "png", "--level", "9"]), 8)
    assert got == CodecConfig("png", 8, {"level": 9})
    with pytest.raises(CodecError, match=r"--quality 30 is not a parameter of the zstd codec"):
        codec_from_args(parse([command, "--codec", "zstd", "--quality", "30"]), 8)
    with pytest.raises(CodecError, match=r"'quality' must be in 1\.\.100"):
        codec_from_args(parse([command, "--quality", "0"]), 8)
