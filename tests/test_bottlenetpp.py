import pytest
import torch
from torch.utils.data import DataLoader

from training.bottlenetpp import (
    AWGNChannel,
    BottleNetPP,
    ErasureChannel,
    small_cnn_parts,
    train_steps,
)
from training.data.synthetic import SyntheticShapes


def test_awgn_noise_power_matches_snr():
    torch.manual_seed(0)
    ch = AWGNChannel()
    z = torch.randn(4, 8, 16, 16) * 5 + 2
    for snr in (0.0, 10.0, 20.0):
        cond = torch.full((4,), snr)
        out = ch(z, cond)
        flat = z.flatten(1)
        clean = flat / flat.pow(2).mean(1, keepdim=True).sqrt()
        noise = out.flatten(1) - clean
        assert clean.pow(2).mean().item() == pytest.approx(1.0, rel=1e-4)
        assert noise.pow(2).mean().item() == pytest.approx(10 ** (-snr / 10), rel=0.05)


def test_erasure_rate_matches_p():
    torch.manual_seed(0)
    z = torch.rand(8, 16, 32, 32) + 0.5
    for p in (0.0, 0.1, 0.5, 0.9):
        out = ErasureChannel()(z, torch.full((8,), p))
        assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.01)
        kept = out != 0
        assert torch.equal(out[kept], z[kept])


def test_channels_have_no_parameters_and_model_rejects_unknown_channel():
    assert list(AWGNChannel().parameters()) == [] and list(ErasureChannel().parameters()) == []
    head, tail, f = small_cnn_parts(3, 4)
    with pytest.raises(ValueError, match="channel"):
        BottleNetPP(head, tail, f, 4, "bsc")


@pytest.mark.parametrize("kind,lo,hi", [("awgn", 0.0, 20.0), ("erasure", 0.0, 0.5)])
def test_training_loss_goes_down(kind, lo, hi):
    torch.manual_seed(0)
    ds = SyntheticShapes(n=128, size=16, num_classes=4, seed=1)
    loader = DataLoader(ds, batch_size=32, shuffle=True)
    head, tail, f = small_cnn_parts(ds[0][0].shape[0], 4)
    model = BottleNetPP(head, tail, f, 4, kind)
    losses = train_steps(model, loader, steps=60, lo=lo, hi=hi)
    assert sum(losses[-8:]) / 8 < 0.7 * sum(losses[:8]) / 8
