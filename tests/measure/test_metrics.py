"""Metrics of samples against data on inputs with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from reschrom.io import read_parquet
from reschrom.measure import metrics


def _data(n=32, seed=0, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, 3, 16, 16, generator=g)


def test_clip_fraction_counts_values_at_or_beyond_one():
    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.99, 1.0, 2.0, 0.3]).reshape(1, 2, 2, 2)
    assert metrics.clip_fraction(x) == pytest.approx(4 / 8)


def test_samples_equal_to_data_give_neutral_metrics():
    d = _data()
    m = metrics.sample_metrics(d, d)
    assert m["lsd_db"] == pytest.approx(0, abs=1e-9)
    assert m["residual_noise"] == pytest.approx(0, abs=1e-9)
    assert m["diversity"] == pytest.approx(1)
    for k in range(5):
        assert m[f"energy_ratio_m{k}"] == pytest.approx(1)
    assert m["clip_fraction"] == 0


def test_doubled_samples_give_known_ratios():
    d = _data(scale=0.1)  # 2·d stays inside [-1, 1]: clamping changes nothing
    m = metrics.sample_metrics(2 * d, d)
    assert m["lsd_db"] == pytest.approx(10 * math.log10(4), rel=1e-6)  # every RAPSD bin ×4
    assert m["residual_noise"] == pytest.approx(3)
    assert m["diversity"] == pytest.approx(2)
    assert m["diversity_coarse"] == pytest.approx(2)
    assert m["pixel_std"] == pytest.approx(2 * float(d.std()), rel=1e-6)
    assert all(m[f"energy_ratio_m{k}"] == pytest.approx(4) for k in range(5))


def test_white_noise_pairwise_distance_and_band_energies():
    sigma = 0.3
    x = _data(n=400, seed=1, scale=sigma)
    # iid N(0, σ²) pixels: RMS distance between two images is σ√2
    assert metrics.mean_pairwise_distance(x) == pytest.approx(sigma * math.sqrt(2), rel=0.01)
    # white noise puts (3/4)·4^{-m} of its variance in band m (1×1 band: 4^{-(M-1)})
    e = metrics.mean_band_energies(x)
    expect = torch.tensor([0.75 / 4**m for m in range(4)] + [1 / 4**4], dtype=torch.float64) * sigma**2
    torch.testing.assert_close(e, expect, rtol=0.05, atol=6e-5)


def test_identical_samples_have_zero_diversity():
    d = _data()
    same = d[:1].repeat(8, 1, 1, 1)
    m = metrics.sample_metrics(same, d)
    assert m["diversity"] == 0 and m["diversity_coarse"] == 0


def test_write_upscale_metrics_round_trip(tmp_path):
    from safetensors.torch import save_file

    d = _data(scale=0.3).clamp(-1, 1)
    u8 = ((d + 1) * 127.5).round().to(torch.uint8)
    save_file({"images": u8}, str(tmp_path / "level_0.safetensors"))
    save_file({"images": d}, str(tmp_path / "a.safetensors"))
    save_file({"images": 3 * d}, str(tmp_path / "b.safetensors"))
    metrics.write_upscale_metrics(
        {"a": tmp_path / "a.safetensors", "b": tmp_path / "b.safetensors"},
        tmp_path / "level_0.safetensors", tmp_path / "m.parquet", tmp_path / "s.parquet",
    )
    m = read_parquet(tmp_path / "m.parquet").set_index("variant")
    assert list(m.index) == ["a", "b"]
    assert m.loc["a", "lsd_db"] < 0.1 < m.loc["b", "lsd_db"]  # uint8 rounding only
    assert m.loc["b", "clip_fraction"] > 0
    s = read_parquet(tmp_path / "s.parquet")
    assert set(s["variant"]) == {"a", "b", "data"} and s["k"].max() == 8


def test_shape_mismatch_is_reported(tmp_path):
    from safetensors.torch import save_file

    save_file({"images": _data()}, str(tmp_path / "d.safetensors"))
    save_file({"images": torch.zeros(2, 3, 8, 8)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="variant x"):
        metrics.write_upscale_metrics({"x": tmp_path / "x.safetensors"}, tmp_path / "d.safetensors",
                                      tmp_path / "m.parquet", tmp_path / "s.parquet")
