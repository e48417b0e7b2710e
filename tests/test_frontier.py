"""The frontier benchmark's scoring: real wire payloads, held-out scores, budget selection."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from benchmarks import cli, frontier  # noqa: E402


def test_scores_count_top1_top5_loss_agreement_and_kl():
    labels = torch.tensor([0, 1, 2, 3])
    teacher = torch.full((4, 10), -5.0)
    teacher[torch.arange(4), labels] = 5.0  # teacher right on all four
    student = teacher.clone()
    student[3] = torch.linspace(0, 9, 10)  # photo 3: top-1 is class 9, class 3 is rank 7
    student[2, 2], student[2, 7] = 4.0, 5.0  # photo 2: class 2 second -> top-5 hit, top-1 miss
    s = frontier.scores(student, teacher, labels.numpy())
    assert s["heldout_teacher_top1"] == 1.0
    assert s["heldout_top1"] == 0.5 and s["heldout_top5"] == 0.75
    assert s["heldout_top1_loss_pts"] == pytest.approx(50.0)
    assert s["agreement"] == 0.5 and s["kl_nats"] > 0
    assert frontier.scores(teacher, teacher, labels.numpy())["kl_nats"] == pytest.approx(0.0)


def _row(split, nbytes, ratio, loss):
    return {"folder": split, "split": split, "bytes_mean": nbytes, "head_ratio_2t": ratio,
            "int8_head": {"heldout_top1_loss_pts": loss}}  # fmt: skip


def test_best_split_is_least_loss_within_bytes_and_head_budgets():
    rows = [
        _row("stage6", 650, 0.90, 20.0),  # best accuracy but head too slow
        _row("stage3", 700, 0.28, 10.0),  # over the bytes budget
        _row("stage2", 600, 0.29, 30.0),
        _row("stage1", 500, 0.20, 40.0),
    ]
    assert frontier.best_within(rows)["split"] == "stage2"
    assert frontier.best_within(rows, head_ratio=1.0)["split"] == "stage6"
    assert frontier.best_within(rows[:2]) is None
    assert not frontier.within_budgets(rows[2])  # 30 points is far from the 2-point goal
    assert frontier.within_budgets(_row("x", 600, 0.29, 1.5))


def test_through_wire_is_the_real_codec_and_the_exported_tail(tmp_path):
    """A tiny exported split (stage3 cut, 1-bit zstd): payload sizes are the FeatureCodec's
    bytes and the logits are the exported tail on the decoded codes, which equal the
    training compressor's roundtrip."""
    from training.bottlefit import make_compressor
    from training.bottleneck import split_model
    from training.compressor import CodecConfig
    from training.export import export_split
    from training.models import create_model
    from wire.quant import quantize_float_to_int8

    try:
        teacher = create_model("efficientnet_lite0", pretrained=True).eval()
    except (FileNotFoundError, ImportError) as exc:
        pytest.skip(f"EfficientNet-Lite0 weights not installed: {exc}")
    torch.manual_seed(0)
    head, tail = split_model(teacher, "stage3", 4, 2, input_size=(64, 64))
    codec = CodecConfig("zstd", 1, {})
    export_split(head, tail, tmp_path, labels=[str(i) for i in range(1000)],
                 mean=tuple(teacher.mean), std=tuple(teacher.std), codec=codec)  # fmt: skip
    fc = frontier.feature_codec(tmp_path)
    assert fc.shape_chw == tuple(head.spec.bottleneck_chw) and fc.codec == "zstd"
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        z = head.eval()(x).numpy()
        want = tail.eval()(make_compressor(head, codec)(torch.from_numpy(z)))
    q = [quantize_float_to_int8(zi, fc.quant) for zi in z]
    sizes, logits = frontier.through_wire(fc, q, "CHW", torch.jit.load(str(tmp_path / "tail.pt")))
    assert sizes == [len(fc.encode_int8(qi, layout="CHW")) for qi in q]
    assert all(0 < n < 4 * 4 * 4 for n in sizes)  # 64 one-bit codes + zstd frame
    assert torch.allclose(logits, want, atol=1e-3)


def test_cli_lists_frontier_and_rejects_a_folder_without_a_split(tmp_path, capsys):
    assert cli.main(["--help"]) == 0
    assert "frontier" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        frontier.main([str(tmp_path)])
    assert exc.value.code == 2
    assert "not an exported split (missing head.pt" in capsys.readouterr().err
