"""The table-driven codecs (``rans``, ``zstd_dict``): exact, hostile-input safe, and paired.

Round trips are property-tested on random symbols and random tables, and checked on real
features (the shipped EfficientNet-Lite0 head run on real photos). Garbage, truncated and
oversized payloads must give ``CodecError`` — never a hang or an allocation beyond the
session's tensor. Tables travel in manifests and are named by hash in HELLO: a head and a
tail whose tables differ refuse to pair, both in the manifests and at a real server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.server_side import NUM_CLASSES, expected_topk, hello_for, make_tail
from support.server_side import server_config as tail_server_config

from server.app import TailServer
from server.client import ServerError, TailClient
from wire.codecs import CODEC_NAMES, FeatureCodec
from wire.entropy_tables import (
    EntropyTables,
    TablesMismatch,
    rans_tables_from_codes,
    rans_tables_from_pmf,
    tables_from_json,
    tables_to_json,
    zstd_dict_tables_from_codes,
)
from wire.errors import CodecError, ManifestError
from wire.manifest import TailManifest, load_tail_manifest, save_manifest
from wire.protocol import ErrorCode
from wire.quant import QuantParams
from wire.rans import RansCoder, quantize_pmf

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / "artifacts" / "efficientnet_lite0-bottlefit"
TABLE_CODECS = ("rans", "zstd_dict")


def _quant(bits: int) -> QuantParams:
    return QuantParams(scale=6.0 / 255.0, zero_point=-128, bits=bits)


def _skewed_codes(rng: np.random.Generator, n: int, chw, bits: int) -> np.ndarray:
    """Codes with per-channel skew, like a rate-trained bottleneck (most channels near 0)."""
    c = chw[0]
    k = 1 << bits
    pmf = rng.dirichlet(np.full(k, 0.3), size=c)
    flat = [rng.choice(k, size=(n, *chw[1:]), p=pmf[i]) for i in range(c)]
    return np.stack(flat, axis=1).astype(np.uint8)


def _tables(kind: str, train: np.ndarray, bits: int) -> dict[str, EntropyTables]:
    if kind == "rans":
        return {"rans": rans_tables_from_codes(train, bits)}
    return {"zstd_dict": zstd_dict_tables_from_codes(train, bits, size=1024)}


shapes = st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(1, 9))


# ----------------------------------------------------------------------------- round trips


@settings(max_examples=150, deadline=None)
@given(
    shape=shapes,
    bits=st.integers(1, 8),
    lanes=st.integers(1, 70),
    seed=st.integers(0, 2**32 - 1),
    concentration=st.sampled_from([0.05, 0.5, 5.0]),
)
def test_rans_roundtrip_random_symbols_and_tables(shape, bits, lanes, seed, concentration):
    rng = np.random.default_rng(seed)
    k = 1 << bits
    pmf = rng.dirichlet(np.full(k, concentration), size=shape[0])
    freq = quantize_pmf(pmf)
    assert (freq >= 1).all() and (freq.astype(int).sum(axis=1) == 4096).all()
    coder = RansCoder(freq, shape, lanes)
    # symbols drawn from a *different* distribution: rare symbols must still code exactly
    codes = rng.integers(0, k, size=shape).astype(np.uint8)
    payload = coder.encode(codes)
    assert len(payload) <= coder.max_size
    assert np.array_equal(coder.decode(payload), codes)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(TABLE_CODECS),
    shape=shapes,
    bits=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_table_codecs_roundtrip_through_feature_codec(kind, shape, bits, seed):
    rng = np.random.default_rng(seed)
    train = _skewed_codes(rng, 24, shape, bits)
    tables = _tables(kind, train, bits)
    fc = FeatureCodec(shape, _quant(bits), kind, None, tables=tables)
    assert fc.params["tables"] == tables[kind].sha256
    for codes in (train[0], rng.integers(0, 1 << bits, size=shape).astype(np.uint8)):
        assert np.array_equal(fc.decode(fc.encode_codes(codes)), codes)


@pytest.fixture(scope="module")
def real_codes() -> dict[int, np.ndarray]:
    """The shipped head's bottleneck on 12 real photos, as 1-, 4- and 8-bit codes."""
    torch = pytest.importorskip("torch")
    from PIL import Image

    from training.compressor import quant_params_for
    from wire.quant import quantize_float_to_int8, requantize_int8

    head_path = ARTIFACT / "head.pt"
    if not head_path.is_file():
        pytest.skip("shipped head artifact missing")
    meta = json.loads((ARTIFACT / "head.pt.json").read_text())
    mean = np.array(meta["normalization"]["mean"], np.float32)[:, None, None]
    std = np.array(meta["normalization"]["std"], np.float32)[:, None, None]
    photos = sorted((ROOT / "vendor" / "photos").rglob("*.jpg"))[:12]
    if len(photos) < 12:
        pytest.skip("vendor photos missing (make photos)")
    head = torch.jit.load(str(head_path))
    batch = []
    for p in photos:
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB").resize((224, 224)), np.float32) / 255.0
        batch.append((rgb.transpose(2, 0, 1) - mean) / std)
    with torch.inference_mode():
        z = head(torch.from_numpy(np.stack(batch))).numpy()
    out = {}
    for bits in (1, 4, 8):
        qp = quant_params_for(6.0, bits)
        out[bits] = requantize_int8(quantize_float_to_int8(z, qp), qp)
    return out


@pytest.mark.parametrize("kind", TABLE_CODECS)
@pytest.mark.parametrize("bits", [1, 4, 8])
def test_table_codecs_exact_on_real_features(real_codes, kind, bits):
    codes = real_codes[bits]
    tables = _tables(kind, codes[:8], bits)
    chw = codes.shape[1:]
    fc = FeatureCodec(chw, _quant(bits), kind, None, tables=tables)
    zstd = FeatureCodec(chw, _quant(bits), "zstd", {"level": 3})
    for c in codes:  # 8 photos the tables were built on, 4 they never saw
        payload = fc.encode_codes(c)
        assert np.array_equal(fc.decode(payload), c)
    if kind == "zstd_dict":  # the dictionary pays off on the frames it was trained on
        seen = sum(len(fc.encode_codes(c)) for c in codes[:8])
        plain = sum(len(zstd.encode_codes(c)) for c in codes[:8])
        assert seen < plain, (bits, seen, plain)
    else:  # rANS spends the tables' cross-entropy plus its lanes' states, nothing more
        freq = tables["rans"].frequencies().astype(np.float64)
        lanes = fc.params["lanes"]
        for c in codes:
            ch = np.arange(chw[0])[:, None, None] * np.ones(chw, dtype=int)
            ideal = float(-np.log2(freq[ch, c] / 4096.0).sum()) / 8
            assert len(fc.encode_codes(c)) <= 1.005 * ideal + 6 * lanes, (bits, ideal)


# ----------------------------------------------------------------------------- hostile bytes


def _codec(kind: str, shape=(3, 5, 7), bits: int = 4, seed: int = 0) -> FeatureCodec:
    rng = np.random.default_rng(seed)
    tables = _tables(kind, _skewed_codes(rng, 16, shape, bits), bits)
    return FeatureCodec(
        shape, _quant(bits), kind, {"lanes": 4} if kind == "rans" else None, tables=tables
    )


_CODECS = {kind: _codec(kind) for kind in TABLE_CODECS}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(TABLE_CODECS), data=st.binary(max_size=600))
def test_garbage_gives_codec_error_or_a_tensor_of_the_session_shape(kind, data):
    fc = _CODECS[kind]
    try:
        out = fc.decode(data)
    except CodecError:
        return
    assert out.shape == fc.shape_chw and out.dtype == np.uint8  # never larger than agreed


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(TABLE_CODECS), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_truncated_and_extended_payloads_are_refused(kind, seed, data):
    fc = _CODECS[kind]
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 16, size=fc.shape_chw).astype(np.uint8)
    payload = fc.encode_codes(codes)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(CodecError):
        fc.decode(payload[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=64))
    with pytest.raises(CodecError):
        fc.decode(payload + extra)


@pytest.mark.parametrize("kind", TABLE_CODECS)
def test_oversized_payload_is_refused_before_decoding(kind):
    fc = _CODECS[kind]
    with pytest.raises(CodecError, match=r"exceeds|expected|not a zstd"):
        fc.decode(b"\x00" * (1 << 20))


def test_zstd_dict_bomb_declaring_a_bigger_tensor_is_refused():
    """A frame that inflates far past the session's tensor is refused on its header."""
    import zstandard

    fc = _CODECS["zstd_dict"]
    bomb = zstandard.ZstdCompressor(write_content_size=True).compress(b"\x00" * (64 << 20))
    assert len(bomb) < 4096
    with pytest.raises(CodecError, match="holds 67108864 bytes"):
        fc.decode(bomb)


# ----------------------------------------------------------------------------- pairing


def test_tables_json_roundtrip_and_tamper_detection():
    rng = np.random.default_rng(3)
    tables = {
        "rans": rans_tables_from_pmf(rng.dirichlet(np.ones(4), size=5), 2),
        "zstd_dict": zstd_dict_tables_from_codes(_skewed_codes(rng, 8, (5, 4, 4), 2), 2, 512),
    }
    js = tables_to_json(tables)
    back = tables_from_json(json.loads(json.dumps(js)))
    assert {k: v.sha256 for k, v in back.items()} == {k: v.sha256 for k, v in tables.items()}
    js["rans"]["data"] = js["zstd_dict"]["data"][: len(js["rans"]["data"])]
    with pytest.raises(CodecError):
        tables_from_json(js)


@pytest.mark.parametrize("kind", TABLE_CODECS)
def test_feature_codec_refuses_tables_it_was_not_named(kind):
    rng = np.random.default_rng(5)
    shape = (3, 4, 4)
    ours = _tables(kind, _skewed_codes(rng, 12, shape, 2), 2)
    theirs = _tables(kind, _skewed_codes(rng, 12, shape, 2), 2)
    assert ours[kind].sha256 != theirs[kind].sha256
    with pytest.raises(TablesMismatch, match="tables"):
        FeatureCodec(shape, _quant(2), kind, {"tables": theirs[kind].sha256}, tables=ours)
    with pytest.raises(CodecError, match="needs"):
        FeatureCodec(shape, _quant(2), kind, {"tables": ours[kind].sha256})
    with pytest.raises(CodecError, match="channels"):
        FeatureCodec((4, 4, 4), _quant(2), kind, None, tables=ours)
    with pytest.raises(CodecError, match="2-bit"):
        FeatureCodec(shape, _quant(3), kind, None, tables=ours)


def _tail_manifest(tables: dict[str, EntropyTables], codec: str, named: str) -> TailManifest:
    params = {"tables": named} if codec in TABLE_CODECS else {}
    return TailManifest(
        model_id="m",
        input_chw=[3, 4, 4],
        num_classes=2,
        labels=["a", "b"],
        codec={"name": codec, "bits": 2, "params": params, "tables": tables_to_json(tables)},
        split={},
    )


def test_manifest_carries_tables_and_refuses_a_wrong_reference(tmp_path):
    rng = np.random.default_rng(9)
    tables = {"rans": rans_tables_from_codes(_skewed_codes(rng, 12, (3, 4, 4), 2), 2)}
    save_manifest(_tail_manifest(tables, "rans", tables["rans"].sha256), tmp_path / "tail.json")
    loaded = load_tail_manifest(tmp_path / "tail.json")
    assert loaded.codec_tables()["rans"].sha256 == tables["rans"].sha256
    with pytest.raises(ManifestError, match=r"codec\.params\.tables"):
        save_manifest(_tail_manifest(tables, "rans", "0" * 64), tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    with pytest.raises(ManifestError, match=r"missing key 'codec\.tables'"):
        save_manifest(
            TailManifest(
                "m",
                [3, 4, 4],
                2,
                ["a", "b"],
                {"name": "rans", "bits": 2, "params": {"tables": "0" * 64}},
                {},
            ),
            tmp_path / "bad.json",
        )
    d = json.loads((tmp_path / "tail.json").read_text())
    d["codec"]["tables"]["rans"]["sha256"] = "f" * 64
    (tmp_path / "tampered.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="does not hash"):
        load_tail_manifest(tmp_path / "tampered.json")


CHW = (6, 5, 5)
QUANT4 = QuantParams(scale=0.05, zero_point=-3, bits=4)


def _server_tail(tmp_path: Path, tables: dict[str, EntropyTables]):
    return make_tail(
        tmp_path / "t",
        "ent-model",
        chw=CHW,
        bits=4,
        manifest_overrides={
            "codec": {"name": "zstd", "bits": 4, "params": {}, "tables": tables_to_json(tables)}
        },
    )


@pytest.mark.parametrize("kind", TABLE_CODECS)
def test_server_decodes_table_codecs_bit_exactly_and_refuses_other_tables(tmp_path, kind):
    rng = np.random.default_rng(11)
    train = _skewed_codes(rng, 32, CHW, 4)
    tables = {
        "rans": rans_tables_from_codes(train, 4),
        "zstd_dict": zstd_dict_tables_from_codes(train, 4, 1024),
    }
    other = _tables(kind, _skewed_codes(rng, 32, CHW, 4), 4)
    tail_dir, module = _server_tail(tmp_path, tables)
    device = FeatureCodec(CHW, QUANT4, kind, None, tables=tables)
    payloads = [device.encode_codes(c) for c in train[:5]]
    with TailServer(tail_server_config([tail_dir], tmp_path)) as srv:
        with TailClient(srv.endpoints[0], timeout_s=10.0) as c:
            welcome = c.hello(
                hello_for(
                    "ent-model", chw=CHW, quant=QUANT4, codec=kind, codec_params=device.params
                )
            )
            assert kind in welcome.capabilities["codecs"]
            for payload in payloads:
                reply = c.infer(payload)
                ids, scores = expected_topk(module, device.decode_float(payload), NUM_CLASSES)
                assert list(reply.top_ids) == ids
                assert np.allclose(reply.top_scores, scores, atol=1e-5)
            with pytest.raises(ServerError) as err:  # garbage: a typed ERROR, session lives on
                c.infer(b"\x07" * 50)
            assert err.value.error.code == ErrorCode.BAD_TENSOR
            assert (
                list(c.infer(payloads[0]).top_ids)
                == expected_topk(module, device.decode_float(payloads[0]), NUM_CLASSES)[0]
            )
        for params in ({"tables": other[kind].sha256}, {}):
            with (
                TailClient(srv.endpoints[0], timeout_s=10.0) as c,
                pytest.raises(ServerError) as err,
            ):
                c.hello(
                    hello_for("ent-model", chw=CHW, quant=QUANT4, codec=kind, codec_params=params)
                )
            assert err.value.error.code == ErrorCode.UNSUPPORTED_CODEC
            assert "tables" in err.value.error.message


def test_table_codecs_are_registered():
    assert {"rans", "zstd_dict"} <= set(CODEC_NAMES)
