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


def _tiny_codec():
    """The tiny split's wire codec: 1-bit zstd."""
    from training.compressor import CodecConfig

    return CodecConfig("zstd", 1, {})


def _tiny_split(folder):
    """A tiny exported stage3 split (C'=4, s=2, 64² input, 1-bit zstd): its head and tail."""
    from training.bottleneck import split_model
    from training.export import export_split
    from training.models import create_model

    try:
        teacher = create_model("efficientnet_lite0", pretrained=True).eval()
    except (FileNotFoundError, ImportError) as exc:
        pytest.skip(f"EfficientNet-Lite0 weights not installed: {exc}")
    torch.manual_seed(0)
    head, tail = split_model(teacher, "stage3", 4, 2, input_size=(64, 64))
    export_split(head, tail, folder, labels=[str(i) for i in range(1000)],
                 mean=tuple(teacher.mean), std=tuple(teacher.std),
                 codec=_tiny_codec())  # fmt: skip
    return head, tail


def test_through_wire_is_the_real_codec_and_the_exported_tail(tmp_path):
    """A tiny exported split (stage3 cut, 1-bit zstd): payload sizes are the FeatureCodec's
    bytes and the logits are the exported tail on the decoded codes, which equal the
    training compressor's roundtrip."""
    from training.bottlefit import make_compressor
    from wire.quant import quantize_float_to_int8

    head, tail = _tiny_split(tmp_path)
    codec = _tiny_codec()
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


def test_zstd_dict_export_is_a_lossless_copy_the_manifest_loaders_and_frontier_accept(tmp_path):
    import json

    import numpy as np

    from benchmarks import frontier_zstd_dict as fzd
    from wire.manifest import load_head_source_manifest, load_tail_manifest
    from wire.quant import quantize_float_to_int8, requantize_int8

    head, _ = _tiny_split(tmp_path / "split")
    (tmp_path / "split" / "metrics.json").write_text(
        json.dumps({"data": {"sources_train": ["imagenet-sample", "debian-corpus"]}})
    )
    plain = frontier.feature_codec(tmp_path / "split")
    with torch.no_grad():
        z = head.eval()(torch.randn(40, 3, 64, 64)).numpy()
    q = [quantize_float_to_int8(zi, plain.quant) for zi in z]
    codes = requantize_int8(np.stack(q[:30]), plain.quant)  # "training" codes
    out = tmp_path / "dict"
    info = fzd.export_with_dictionary(tmp_path / "split", out, codes, size=1024)
    assert 0 < info["dictionary_bytes"] <= 1024
    head_m = load_head_source_manifest(out / "head.pt.json")
    tail_m = load_tail_manifest(out / "tail.json")
    assert head_m.codec["name"] == tail_m.codec["name"] == "zstd_dict"
    assert head_m.codec["params"]["tables"] == info["sha256"]
    src = json.loads((tmp_path / "split" / "head.pt.json").read_text())
    assert head_m.model_id == src["model_id"]  # same programs, same model
    assert (out / "head.pt").read_bytes() == (tmp_path / "split" / "head.pt").read_bytes()
    assert not (out / "README.md").exists() and (out / "metrics.json").is_file()
    fc = frontier.feature_codec(out)  # the frontier reads the dictionary from the manifest
    assert fc.codec == "zstd_dict"
    for qi in q[30:]:  # held-out codes: same decode as plain zstd
        assert np.array_equal(
            fc.decode_float(fc.encode_int8(qi, layout="CHW")),
            plain.decode_float(plain.encode_int8(qi, layout="CHW")),
        )
    assert frontier.trained_on(out) == ["imagenet-sample", "debian-corpus"]
    assert frontier.trained_on(tmp_path) == []
    with pytest.raises(FileExistsError, match="exists"):
        fzd.export_with_dictionary(tmp_path / "split", out, codes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dict", "split"]  # no temp left


def test_markdown_names_training_data_and_non_default_codec(tmp_path):
    row = {"folder": "x", "split": "stage3", "channels": 32, "stride": 2,
           "codec": {"name": "zstd_dict", "bits": 1, "params": {}},
           "trained_on": ["imagenet-sample", "debian-corpus"],
           "bytes_mean": 671.0, "bytes_max": 794, "head_ms_2t": 1.6, "full_ms_2t": 2.9,
           "head_ratio_2t": 0.55, "head_ratio_1t": 0.5, "head_ratio_2t_by_min": 0.5,
           "head_ratio_1t_by_min": 0.5, "within_budgets": False,
           "int8_head": {"heldout_top1": 0.6, "heldout_top5": 0.85,
                         "heldout_top1_loss_pts": 24.5, "agreement": 0.66, "kl_nats": 0.9},
           "float_head": {"heldout_top1_loss_pts": 25.0, "agreement": 0.65}}  # fmt: skip
    result = {"teacher_top1": 0.845, "n_heldout": 200, "rounds": 30, "rows": [row],
              "note": "loaded machine"}  # fmt: skip
    frontier.write_markdown(result, tmp_path / "f.md")
    text = (tmp_path / "f.md").read_text()
    assert "| stage3 C'=32 s=2 1-bit zstd_dict | ImageNet 500 + Debian corpus | 671 |" in text
    assert frontier.sources_of({"trained_on": []}) == "?"
