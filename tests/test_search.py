import numpy as np
import pytest

from training.linkmodel import TABLE3, LinkConfigError, load_links, parse_links
from training.search import Candidate, cost, fewest_bits, select

WIFI = next(link for link in TABLE3 if link.name == "WiFi")
G3 = next(link for link in TABLE3 if link.name == "3G")


def _cands():
    # A: light head, many bytes; B: heavy head, few bytes.
    a = Candidate("layer1", 8, 1, 4, 90.0, head_ms=2.0, head_power_mw=2000.0, nbytes=20_000)
    b = Candidate("layer3", 4, 2, 2, 89.0, head_ms=30.0, head_power_mw=2000.0, nbytes=1_000)
    return a, b


def test_cost_hand_computed():
    a, _ = _cands()
    c = cost(a, G3)
    tx_ms = 20_000 * 8 / 1.1e6 * 1e3  # 145.45 ms
    assert c.latency_ms == pytest.approx(2.0 + tx_ms)
    assert c.energy_mj == pytest.approx(2000 * 2.0 / 1e3 + (868.98 * 1.1 + 817.88) * tx_ms / 1e3)


def test_select_latency_and_energy_pick_expected():
    a, b = _cands()
    # 3G: A = 2 + 145.45 ms; B = 30 + 7.27 ms -> B
    assert select([a, b], G3, "latency") is b
    # WiFi: A = 2 + 8.47 = 10.47 ms; B = 30 + 0.42 ms -> A
    assert select([a, b], WIFI, "latency") is a
    # WiFi energy: A = 4 + 0.6665*8.475 = 9.65 mJ; B = 60 + 0.42 mJ -> A
    assert select([a, b], WIFI, "energy") is a
    # energy != latency choice: a cheap-power heavy head
    c = Candidate("layer3", 4, 2, 2, 89.0, head_ms=12.0, head_power_mw=100.0, nbytes=1_000)
    assert select([a, c], WIFI, "latency") is a  # 10.47 vs 12.42 ms
    assert select([a, c], WIFI, "energy") is c  # 9.65 vs 1.2+0.28 mJ
    with pytest.raises(ValueError, match="objective"):
        select([a], WIFI, "speed")


def test_fewest_bits_within_budget():
    accs = {1: 70.0, 2: 85.0, 3: 88.5, 4: 89.5, 8: 90.0}
    assert fewest_bits(lambda b: accs[b], baseline=90.0, budget=2.0, bits=accs) == (3, 88.5)
    assert fewest_bits(lambda b: accs[b], baseline=90.0, budget=0.2, bits=accs) == (8, 90.0)
    assert fewest_bits(lambda b: accs[b], baseline=95.0, budget=2.0, bits=accs) is None


def test_example_links_toml_matches_table3():
    links = load_links("examples/links.toml")
    assert set(links) == set(TABLE3)


@pytest.mark.parametrize(
    "data,key",
    [
        (
            {"links": {"x": {"rate_mbps": 1, "alpha_mw_per_mbps": 1, "beta_mw": 1, "gain": 2}}},
            "links.x.gain",
        ),
        ({"links": {"x": {"rate_mbps": 1, "alpha_mw_per_mbps": 1}}}, "links.x.beta_mw"),
        (
            {"links": {"x": {"rate_mbps": 0, "alpha_mw_per_mbps": 1, "beta_mw": 1}}},
            "links.x.rate_mbps",
        ),
        (
            {"links": {"x": {"rate_mbps": "fast", "alpha_mw_per_mbps": 1, "beta_mw": 1}}},
            "links.x.rate_mbps",
        ),
        ({"link": {}}, "link"),
        ({}, "links"),
    ],
)
def test_link_validation_names_key(data, key):
    with pytest.raises(LinkConfigError, match=key):
        parse_links(data)


def test_bad_toml_file(tmp_path):
    p = tmp_path / "l.toml"
    p.write_text("[links.x\n")
    with pytest.raises(LinkConfigError, match="invalid TOML"):
        load_links(p)


def test_overall_backend_uses_one_backend_for_all_candidates():
    from training.search_latency import TFLITE, TORCH, overall_backend

    assert overall_backend("auto", None, {}) == (
        TFLITE,
        "every candidate's head converted to int8 TFLite and timed with ai-edge-litert",
    )
    assert overall_backend("tflite", None, {})[0] == TFLITE
    assert overall_backend("torch", None, {}) == (TORCH, "--latency-backend torch")
    backend, why = overall_backend("auto", "tensorflow is not installed", {})
    assert (backend, why) == (TORCH, "converter unavailable: tensorflow is not installed")
    # one failed conversion sends every candidate to torch, and names the failure
    backend, why = overall_backend("auto", None, {"rb2_c4_s1": "VerificationError: low cosine"})
    assert backend == TORCH and "1 candidate(s)" in why
    assert "rb2_c4_s1: VerificationError: low cosine" in why
    with pytest.raises(ValueError, match="--latency-backend"):
        overall_backend("onnx", None, {})


def test_calibration_images_are_the_raw_fashion_mnist_pixels():
    """De-normalising the served tensors gives back the IDX bytes exactly, as RGB."""
    pytest.importorskip("torch")
    from training.data.fashion_mnist import MEAN, STD, FashionMNIST, load_arrays
    from training.search_latency import calibration_images

    ds = FashionMNIST("test", limit=200, seed=3)
    px = calibration_images(ds, MEAN, STD, 16, seed=0)
    assert px.shape == (16, 28, 28, 3) and px.dtype == np.uint8
    raw = {img.tobytes() for img in load_arrays("test")[0]}
    for img in px:
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
        assert img[..., 0].tobytes() in raw
    assert len({img.tobytes() for img in px}) == 16  # 16 distinct images, seeded
    assert np.array_equal(px, calibration_images(ds, MEAN, STD, 16, seed=0))
    with pytest.raises(ValueError, match="--calib-images"):
        calibration_images(ds, MEAN, STD, 0, seed=0)
