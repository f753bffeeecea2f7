"""RAPSD and the x̂0 spectra of sampling trajectories (paper Fig. 1, eq. 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reschrom.measure.trajectory import (
    SPECTRA_COLUMNS,
    capturing_x0,
    posterior_mean,
    spectra_frame,
    x0_spectra,
)
from reschrom.theory.spectra import rapsd, spectral_slope


def power_law_field(n: int, size: int, exponent: float, seed: int = 0) -> torch.Tensor:
    """Gaussian random fields with power spectrum ∝ 1/|f|^exponent (zero mean), (n, 1, size, size)."""
    g = torch.Generator().manual_seed(seed)
    white = torch.randn(n, 1, size, size, generator=g, dtype=torch.float64)
    f = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64)
    r = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    amp = torch.where(r > 0, r.clamp_min(1e-12) ** (-exponent / 2), torch.zeros_like(r))
    return torch.fft.ifft2(torch.fft.fft2(white) * amp).real


def test_rapsd_white_noise_is_flat():
    sigma = 0.7
    x = sigma * torch.randn(64, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = rapsd(x).mean(0)
    assert p[1:].numpy() == pytest.approx(sigma**2, rel=0.1)
    assert abs(float(spectral_slope(p))) < 0.05


@pytest.mark.parametrize("exponent", [2.0, 1.0, 3.0])
def test_rapsd_power_law_slope(exponent):
    x = power_law_field(32, 64, exponent)
    slope = float(spectral_slope(rapsd(x).mean(0), k_min=2, k_max=28))
    assert slope == pytest.approx(-exponent, abs=0.1)


def test_posterior_mean_inverts_the_forward_process():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    a = 0.3
    xt = a**0.5 * x0 + (1 - a) ** 0.5 * eps
    torch.testing.assert_close(posterior_mean(xt, eps, a), x0)
    v = a**0.5 * eps - (1 - a) ** 0.5 * x0
    torch.testing.assert_close(posterior_mean(xt, v, a, "v_prediction"), x0)
    with pytest.raises(ValueError, match="prediction_type"):
        posterior_mean(xt, eps, a, "flow")


@pytest.fixture(scope="module")
def oracle():
    from reschrom.models.oracle import build_oracle_pipeline

    return build_oracle_pipeline(resolution=16, sampler="ddim")


def test_capture_matches_scheduler_and_leaves_output_unchanged(oracle):
    """With an unclipped DDIM scheduler, eq. 7 equals the scheduler's own pred_original_sample."""
    kw = dict(prompt="disc", num_inference_steps=5, guidance_scale=3.0, output_type="pt")
    ref = oracle(generator=torch.Generator().manual_seed(0), **kw).images
    seen = []
    original = type(oracle.scheduler).step

    def spy(self, *a, **k):
        out = original(self, *a, **k)
        seen.append(out[1] if isinstance(out, tuple) else out.pred_original_sample)
        return out

    type(oracle.scheduler).step = spy
    try:
        with capturing_x0(oracle) as cap:
            out = oracle(generator=torch.Generator().manual_seed(0), **kw).images
    finally:
        type(oracle.scheduler).step = original
    assert torch.equal(out, ref)
    assert len(cap.x0) == len(seen) == 5
    for mine, theirs in zip(cap.x0, seen):
        torch.testing.assert_close(mine, theirs.float(), rtol=1e-4, atol=1e-4)
    assert cap.timesteps == sorted(cap.timesteps, reverse=True)
    assert "step" not in vars(oracle.scheduler)  # the wrapper is gone


def test_capture_on_if_learned_variance():
    from builders import build_tiny_if_pipeline

    pipe = build_tiny_if_pipeline(resolution=16)
    with capturing_x0(pipe) as cap:
        pipe(prompt="a red circle", num_inference_steps=3, guidance_scale=2.0, output_type="pt",
             clean_caption=False, generator=torch.Generator().manual_seed(0))
    assert [x.shape for x in cap.x0] == [(1, 3, 16, 16)] * 3  # ε channels only, no variance


def test_x0_spectra_oracle_is_coarse_to_fine(oracle):
    res = x0_spectra(oracle, ["disc", "grass", "square"], n_samples=6, batch_size=3, num_inference_steps=20,
                     guidance_scale=3.0, n_snapshots=4)
    S1, K = res.power.shape
    assert (S1, K) == (19, 9) and res.n_samples == 6
    assert res.snapshots["x0"].shape == (4, 3, 16, 16) and res.snapshots["x_t"].shape == (4, 3, 16, 16)
    p = res.power[:, 1:]
    k = np.arange(1, K)
    mean_k = (p * k).sum(1) / p.sum(1)
    # the power-weighted frequency of x̂0's change rises from noise to data
    assert mean_k[-3:].mean() > 1.5 * mean_k[2:6].mean()
    df = spectra_frame(res, "oracle", 1000)
    assert list(df.columns) == SPECTRA_COLUMNS and len(df) == S1 * K
    assert (df.n_samples == 6).all() and df.t_frac.between(0, 1).all()
    assert df.groupby("step").t.nunique().eq(1).all()


def test_spectra_figure(tmp_path, oracle):
    from reschrom.io import write_parquet
    from reschrom.measure.trajectory import save_snapshots
    from reschrom.plots.compose import plot_x0_spectra

    res = x0_spectra(oracle, ["disc"], n_samples=2, batch_size=2, num_inference_steps=5, guidance_scale=2.0)
    write_parquet(spectra_frame(res, "oracle", 1000), tmp_path / "s.parquet")
    save_snapshots(res, tmp_path / "s.safetensors")
    plot_x0_spectra(tmp_path / "s.parquet", tmp_path / "s.safetensors", tmp_path / "f.png", dpi=40)
    assert (tmp_path / "f.png").stat().st_size > 1000
