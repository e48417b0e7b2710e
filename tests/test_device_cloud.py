"""The ``cloud`` partition (issue #22): the picture goes to the server as a JPEG, the server
runs the whole model as one more registry entry.

Real pieces only: the ``jpeg_image`` codec through Pillow, a TorchScript whole model written
by ``training.cloud_export`` and loaded by the server's registry, the in-process
``TailServer`` for the wire checks and the ``splitfit-server`` + ``splitfit-device``
processes for the daemon.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.device_side import cached_head, start_daemon, start_server, write_config

from device.cloud import CloudInput, build_cloud, encode_picture
from device.config import ConfigError, HeadSection, ServerSection, parse_config
from device.head import HeadError
from wire.codecs import FeatureCodec, feature_codec_names
from wire.errors import CodecError
from wire.quant import QuantParams

torch = pytest.importorskip("torch")

LABELS = ["ant", "bee", "cat"]
SIZE = 32
PIXELS = QuantParams(1 / 255, -128, 8)


def _photo(h: int = SIZE, w: int = SIZE, seed: int = 0) -> np.ndarray:
    """A smooth colour picture (uint8 H×W×3), the kind of content JPEG is made for."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [
        127 + 100 * np.sin(xx / (5 + 3 * c) + rng.uniform(0, 6)) * np.cos(yy / (7 + c))
        for c in range(3)
    ]
    return np.clip(np.stack(chans, axis=-1), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------- the codec


def test_jpeg_image_roundtrips_a_picture_and_its_quality_sets_the_size():
    rgb = _photo(224, 224)
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    sizes = {}
    for q in (20, 85, 95):
        fc = FeatureCodec((3, 224, 224), PIXELS, "jpeg_image", {"quality": q})
        data = fc.encode_codes(chw)
        with Image.open(io.BytesIO(data)) as im:  # an ordinary colour JPEG any tool can open
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (224, 224)
        back = fc.decode(data)
        assert back.dtype == np.uint8 and back.shape == (3, 224, 224)
        err = np.abs(back.astype(int) - chw.astype(int)).mean()
        assert err < (4.0 if q >= 85 else 8.0), (q, err)
        # the server's dequantization hands the model pixel / 255
        f = fc.decode_float(data)
        assert np.allclose(f, back.astype(np.float32) / 255, atol=1e-6)
        sizes[q] = len(data)
    assert sizes[20] < sizes[85] < sizes[95]
    gray = FeatureCodec((1, 224, 224), PIXELS, "jpeg_image")
    assert gray.decode(gray.encode_codes(chw[:1])).shape == (1, 224, 224)


def test_jpeg_image_refuses_bottlenecks_and_bad_payloads():
    assert "jpeg_image" not in feature_codec_names()
    with pytest.raises(CodecError, match=r"3 \(RGB\) or 1 \(gray\) channels.*feature codec"):
        FeatureCodec((12, 56, 56), PIXELS, "jpeg_image")
    with pytest.raises(CodecError, match="8-bit picture"):
        FeatureCodec((3, 32, 32), QuantParams(1 / 255, -128, 6), "jpeg_image")
    with pytest.raises(CodecError, match=r"'quality' must be in 1\.\.100"):
        FeatureCodec((3, 32, 32), PIXELS, "jpeg_image", {"quality": 0})
    fc = FeatureCodec((3, SIZE, SIZE), PIXELS, "jpeg_image")
    good = fc.encode_codes(np.ascontiguousarray(_photo().transpose(2, 0, 1)))
    for bad in (b"", good[:-1], good[: len(good) // 2], good + b"\0", b"\xff\xd9"):
        with pytest.raises(CodecError):
            fc.decode(bad)
    other = FeatureCodec((3, SIZE, SIZE + 8), PIXELS, "jpeg_image")
    with pytest.raises(CodecError, match=f"expected {SIZE}×{SIZE}"):
        fc.decode(other.encode_codes(np.zeros((3, SIZE, SIZE + 8), np.uint8)))
    buf = io.BytesIO()
    Image.new("L", (SIZE, SIZE)).save(buf, format="JPEG")
    with pytest.raises(CodecError, match="mode is 'L', expected 'RGB'"):
        fc.decode(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (2000, 2000)).save(buf, format="JPEG", quality=1)  # never decoded
    with pytest.raises(CodecError, match=f"2000×2000, expected {SIZE}×{SIZE}"):
        fc.decode(buf.getvalue())


# ---------------------------------------------------------------------- the cloud model


class TinyNet(torch.nn.Module):
    """A real (small) CNN classifier on normalized 3×32×32 input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8, len(LABELS))

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    from training.cloud_export import export_cloud

    d = tmp_path_factory.mktemp("cloud")
    net = TinyNet().eval()
    exported = export_cloud(
        net, d, input_hw=(SIZE, SIZE), labels=LABELS, mean=MEAN, std=STD, quality=70,
        extra={"accuracy": 0.8},
    )  # fmt: skip
    return exported, net


def test_export_writes_a_registry_entry_that_normalizes_itself(cloud):
    from server.registry import load_tail

    exported, net = cloud
    m = json.loads(exported.manifest.read_text())
    assert m["input_chw"] == [3, SIZE, SIZE] and m["labels"] == LABELS
    assert m["codec"] == {"name": "jpeg_image", "bits": 8, "params": {"quality": 70}}
    assert m["split"]["quant"] == {"scale": 1 / 255, "zero_point": -128}
    tail = load_tail(exported.model, exported.manifest, torch.device("cpu"))
    assert tail.model_id == exported.model_id
    x = torch.rand(4, 3, SIZE, SIZE)
    with torch.no_grad():
        want = net((x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1))
        got = tail.module(x)
    assert torch.allclose(got, want, atol=1e-5)


def test_the_server_pairs_a_cloud_hello_and_answers_from_the_jpeg(cloud, tmp_path):
    from support.server_side import server_config

    from server.app import TailServer
    from server.client import TailClient

    exported, net = cloud
    cfg = server_config(
        [], tmp_path, models=[{"tail": str(exported.model), "manifest": str(exported.manifest)}]
    )
    head = HeadSection("cloud", exported.manifest, exported.manifest, kind="cloud", quality=90)
    _, codec, hello = build_cloud(head, ServerSection(), "test-device")
    assert hello.codec == "jpeg_image" and hello.codec_params == {"quality": 90}
    assert hello.tensor_shape == (3, SIZE, SIZE) and hello.model_id == exported.model_id
    with TailServer(cfg) as server, TailClient(server.endpoints[0]) as client:
        client.hello(hello)
        for seed in range(4):
            image = _photo(seed=seed)[None]
            payload = encode_picture(codec, image)
            reply = client.infer(payload)
            # what the server must have computed: the model on the decoded JPEG / 255
            seen = torch.from_numpy(codec.decode_float(payload))[None]
            with torch.no_grad():
                logits = net(
                    (seen - torch.tensor(MEAN).view(1, 3, 1, 1))
                    / torch.tensor(STD).view(1, 3, 1, 1)
                )
            assert reply.top_ids[0] == int(logits.argmax())
            assert reply.labels[0] == LABELS[int(logits.argmax())]


@pytest.fixture(scope="module")
def split_head(tmp_path_factory) -> tuple[Path, Path]:
    return cached_head(tmp_path_factory.getbasetemp())


def test_cloud_partition_config_and_refusals(cloud, split_head, tmp_path):
    exported, _ = cloud
    cfg = parse_config(
        {"heads": [{"model": str(exported.manifest), "kind": "cloud", "quality": 40}]}, tmp_path
    )
    h = cfg.heads[0]
    assert h.kind == "cloud" and h.remote and h.quality == 40 and h.manifest == exported.manifest
    with pytest.raises(ConfigError, match="quality"):
        parse_config({"heads": [{"model": "c.json", "kind": "cloud", "quality": 101}]}, tmp_path)
    inp = CloudInput("cloud", exported.manifest)
    assert inp.input_hw == (SIZE, SIZE) and inp.labels == LABELS
    with pytest.raises(HeadError, match="not a cloud model's manifest"):
        CloudInput("c", split_head[1])
    with pytest.raises(HeadError, match="not found"):
        CloudInput("c", tmp_path / "missing.json")


# ---------------------------------------------------------------------- daemon + server


def test_daemon_streams_the_picture_to_the_cloud_model(cloud, tmp_path, free_port):
    exported, _ = cloud
    port = free_port()
    server = start_server(
        tmp_path, port, f'[[models]]\ntail = "{exported.model}"\nmanifest = "{exported.manifest}"\n'
    )
    rows_by_q = {}
    try:
        for q in (10, 95):
            metrics = tmp_path / f"m{q}.jsonl"
            heads = f'[[heads]]\nname = "cloud"\nkind = "cloud"\nmodel = "{exported.manifest}"\nquality = {q}\n'
            cfg = write_config(
                tmp_path / f"d{q}.toml", exported.manifest, port,
                f'[metrics]\npath = "{metrics}"\n', heads=heads,
            )  # fmt: skip
            summary = tmp_path / f"s{q}.json"
            d = start_daemon(cfg, "--frames", "15", "--summary", str(summary))
            assert d.p.wait(60) == 0, d.err[-10:]
            s = json.loads(summary.read_text())
            assert s["replied"] == 15 and s["sessions"] == 1 and s["answered_local"] == 0
            assert s["active_head"] == "cloud" and s["partition_estimates"]["cloud"]["latency_ms"]
            rows = [json.loads(ln) for ln in metrics.read_text().splitlines()]
            assert len(rows) == 15 and all(r["status"] == "ok" for r in rows)
            assert all(r["head_ms"] == 0 and r["bytes"] > 0 for r in rows)
            assert all(r["top1_label"] in LABELS for r in rows)
            rows_by_q[q] = rows
    finally:
        server.stop()
    # the configured quality is what went over the wire
    assert np.median([r["bytes"] for r in rows_by_q[10]]) < np.median(
        [r["bytes"] for r in rows_by_q[95]]
    )
