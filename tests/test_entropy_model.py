"""The learned entropy model (training.entropy_model): a density, a rate, tables that code.

The factorized prior must be a proper distribution over the codes, learn a known source's
entropy, and its exported tables must make the board's rANS coder spend about that many
bits. The rate bottleneck must hand the tail exactly the wire's codes while passing
gradients, and the rate weight must trade bytes for accuracy. A rate-trained export carries
the same tables in both manifests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.rate_jobs import tiny_rate_job

from training.compressor import CodecConfig, quant_params_for
from training.entropy_model import FactorizedPrior, RateBottleneck, rate_loss
from training.pipeline import run_train
from wire.codecs import FeatureCodec
from wire.entropy_tables import rans_tables_from_pmf
from wire.manifest import load_head_source_manifest, load_tail_manifest
from wire.quant import dequantize_codes, quantize_float_to_int8, requantize_int8

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_prior_pmf_is_a_distribution_and_likelihoods_agree_with_it() -> None:
    torch.manual_seed(0)
    prior = FactorizedPrior(3)
    pmf = prior.pmf(15)
    assert pmf.shape == (3, 16) and (pmf >= 0).all()
    assert np.allclose(pmf.sum(axis=1), 1.0, atol=1e-6)
    codes = torch.arange(1, 15, dtype=torch.float32).repeat(3, 1).reshape(1, 3, 1, 14)
    lik = prior.likelihood(codes)[0, :, 0, :].detach().numpy()
    assert np.allclose(lik, pmf[:, 1:15], atol=1e-5)  # interior codes: the same numbers


def _source(n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Channel 0 mostly zero, channel 1 uniform on 0..3: codes (n, 2, 4, 4) and entropy bits."""
    p0 = np.array([0.9, 0.05, 0.03, 0.02])
    c0 = rng.choice(4, size=(n, 4, 4), p=p0)
    c1 = rng.integers(0, 4, size=(n, 4, 4))
    per_frame = 16 * (-(p0 * np.log2(p0)).sum() + 2.0)
    return np.stack([c0, c1], axis=1).astype(np.uint8), per_frame


def test_prior_learns_a_known_sources_entropy_and_its_tables_code_near_it() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    codes, entropy = _source(512, rng)
    prior = FactorizedPrior(2)
    opt = torch.optim.Adam(prior.parameters(), lr=0.2)
    x = torch.from_numpy(codes.astype(np.float32))
    for _ in range(300):
        bits = -torch.log2(prior.likelihood(x)).sum() / len(x)
        opt.zero_grad()
        bits.backward()
        opt.step()
    learned = float(bits.detach())
    assert entropy <= learned < 1.05 * entropy, (learned, entropy)
    tables = rans_tables_from_pmf(prior.pmf(3), 2)
    qp = quant_params_for(6.0, 2)
    fc = FeatureCodec((2, 4, 4), qp, "rans", {"lanes": 1}, tables={"rans": tables})
    test, _ = _source(64, rng)
    sizes = []
    for c in test:
        payload = fc.encode_codes(c)
        assert np.array_equal(fc.decode(payload), c)
        sizes.append(len(payload) - 4)  # one lane: 4 bytes of final state
    assert np.mean(sizes) * 8 < 1.1 * entropy + 16, (np.mean(sizes) * 8, entropy)


def test_rate_bottleneck_gives_the_tail_the_wires_codes_and_passes_gradients() -> None:
    torch.manual_seed(1)
    rate = RateBottleneck(channels=3, out_max=6.0, bits=8)
    z = (torch.rand(4, 3, 5, 5) * 6.0).requires_grad_(True)
    rate.eval()
    out = rate(z)
    qp = quant_params_for(6.0, 8)
    wire = dequantize_codes(requantize_int8(quantize_float_to_int8(z.detach().numpy(), qp), qp), qp)
    assert np.allclose(out.detach().numpy(), wire, atol=1e-5)
    rate.train()
    out = rate(z)
    (out.sum() + rate.bits_per_frame).backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    assert all(p.grad is not None for p in rate.prior.parameters())
    assert float(rate.bits_per_frame) > 0


def _train_rate(weight: float, steps: int = 150) -> tuple[float, float]:
    """A linear head -> rate bottleneck -> linear tail on a 2-class toy; (bits, accuracy)."""
    torch.manual_seed(2)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(512, 8, generator=g)
    y = (x[:, 0] > 0).long()
    head = torch.nn.Sequential(torch.nn.Linear(8, 4 * 9), torch.nn.Hardtanh(0.0, 6.0))
    rate = RateBottleneck(channels=4, out_max=6.0, bits=8)
    tail = torch.nn.Linear(4 * 9, 2)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head, self.rate, self.tail = head, rate, tail

        def forward(self, v):
            return self.tail(self.rate(self.head(v).reshape(-1, 4, 3, 3)).reshape(len(v), -1))

    net = Net()

    def ce(model, v, t):
        logits = model(v)
        return torch.nn.functional.cross_entropy(logits, t), logits

    loss_fn = rate_loss(ce, rate, weight)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(steps):
        loss, _ = loss_fn(net, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(x).argmax(1) == y).float().mean())
    return float(rate.bits_per_frame), acc


def test_rate_weight_trades_bytes_for_accuracy() -> None:
    bits_free, acc_free = _train_rate(0.0)
    bits_paid, _ = _train_rate(0.5)
    assert acc_free > 0.9
    assert bits_paid < 0.5 * bits_free, (bits_paid, bits_free)
    with pytest.raises(ValueError, match="rate weight"):
        rate_loss(lambda m, a, b: (a, b), RateBottleneck(1, 6.0), -1.0)


def test_rate_trained_export_carries_the_same_tables_in_both_manifests(tmp_path) -> None:
    job = tiny_rate_job(bits=8, lanes=8, limit_train=64)
    res = run_train(job, tmp_path)
    head = load_head_source_manifest(tmp_path / "head.pt.json")
    tail = load_tail_manifest(tmp_path / "tail.json")
    assert head.codec == tail.codec
    assert set(tail.codec_tables()) == {"rans", "zstd_dict"}
    assert tail.codec["params"]["tables"] == tail.codec_tables()["rans"].sha256
    spec = res.net.spec
    qp = quant_params_for(spec.out_max, 8)
    board = FeatureCodec(
        spec.bottleneck_chw, qp, "rans", head.codec["params"], tables=head.codec_tables()
    )
    server = FeatureCodec(
        spec.bottleneck_chw, qp, "rans", dict(board.params), tables=tail.codec_tables()
    )
    x, _ = res.bundle.val[0]
    with torch.no_grad():
        z = res.net.head(x[None]).numpy()
    payload = board.encode_int8(quantize_float_to_int8(z, qp)[0], layout="CHW")
    assert np.array_equal(server.decode(payload), board.decode(payload))
    assert "rate_weight" in res.metrics["job"]


def test_train_cli_rate_weight_flag(tmp_path, capsys) -> None:
    from training.cli import main

    common = ["train", "--data", "synthetic", "--limit-train", "64", "--limit-val", "32"]
    common += ["--epochs", "1", "--batch-size", "32", "--threads", "1", "--no-progress"]
    out = tmp_path / "run"
    assert main([*common, "--codec", "rans", "--out", str(out)]) == 2
    assert "--rate-weight" in capsys.readouterr().err
    assert not out.exists()
    argv = [*common, "--codec", "zstd_dict", "--rate-weight", "0.01", "--out", str(out)]
    assert main(argv) == 0
    tail = load_tail_manifest(out / "tail.json")
    assert tail.codec["name"] == "zstd_dict"
    assert tail.codec["params"]["tables"] == tail.codec_tables()["zstd_dict"].sha256


def _bottlefit_stage2(weight: float) -> float:
    """BottleFit stage 2 ("bottleneck") on a tiny split; the rate model's bits/frame after."""
    from training.bottlefit import BottleFitConfig, make_compressor, stage2_finetune
    from training.bottleneck import split_model
    from training.models import create_model

    torch.manual_seed(4)
    model = create_model("resnet_small", num_classes=3)
    head, tail = split_model(model, "rb1", 2, 2, input_size=(32, 32))
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        feats = head.body.eval()(x)
        teacher = torch.randn(64, 3, generator=torch.Generator().manual_seed(6))
    cfg = BottleFitConfig(
        stage1_epochs=0,
        stage2_epochs=40,
        stage2_lr=1e-2,
        stage2_train="bottleneck",
        rate_weight=weight,
        batch_size=16,
    )
    comp = make_compressor(head, CodecConfig("zstd_dict", 8, {}), weight)
    assert isinstance(comp, RateBottleneck)
    labels = torch.full((64,), -1)
    stage2_finetune(tail, feats, teacher, labels, cfg, head=head, compressor=comp)
    comp.eval()
    with torch.no_grad():
        comp(head.reduction(feats))
    return float(comp.bits_per_frame)


def test_bottlefit_stage2_rate_term_makes_the_bottleneck_cheaper() -> None:
    from training.bottlefit import BottleFitConfig

    free = _bottlefit_stage2(1e-5)  # the prior is fit, the rate barely matters
    paid = _bottlefit_stage2(0.5)
    assert paid < 0.75 * free, (paid, free)  # measured: 490 vs 747 bits per frame
    with pytest.raises(ValueError, match="stage2_train"):
        BottleFitConfig(rate_weight=0.1, stage2_train="tail")
    assert "rate_weight" not in BottleFitConfig().to_dict()  # old run keys unchanged
    assert BottleFitConfig(rate_weight=0.1, stage2_train="all").to_dict()["rate_weight"] == 0.1


def test_rate_accuracy_verdict_compares_at_equal_top1() -> None:
    from benchmarks.rate_accuracy import baseline_bytes_at, verdict

    base = [
        {"family": "n-bit + zstd", "bits": 1, "top1": 0.60, "bytes_mean": 25.0},
        {"family": "n-bit + zstd", "bits": 2, "top1": 0.80, "bytes_mean": 100.0},
    ]
    assert baseline_bytes_at(base, 0.70) == pytest.approx(50.0)  # geometric midpoint
    assert baseline_bytes_at(base, 0.85) is None  # outside the curve: no extrapolation
    dominated = {"family": "n-bit + zstd", "bits": 8, "top1": 0.75, "bytes_mean": 400.0}
    assert baseline_bytes_at([*base, dominated], 0.70) == pytest.approx(50.0)  # not on the front
    point = {"family": "rate", "bits": 4, "lambda": 0.01, "codec": "rans"}
    rows = [*base, {**point, "top1": 0.70, "bytes_mean": 20.0}]
    (p,) = verdict(rows)["points"]
    assert p["ratio"] == pytest.approx(2.5) and p["within_tol_bits"] is None
    rows = [*base, {**point, "top1": 0.797, "bytes_mean": 40.0}]
    (p,) = verdict(rows)["points"]
    assert p["within_tol_bits"] == 2 and p["within_tol_ratio"] == pytest.approx(2.5)
