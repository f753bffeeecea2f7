"""The analytic oracle: exact posterior of a Gaussian concept mixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reschrom.models.oracle import (
    CONCEPT_LIBRARY,
    build_oracle_pipeline,
    concept_weights,
    mean_image,
    power_spectrum,
)


def _dense_cov(S_full: np.ndarray) -> np.ndarray:
    """Σ = F^H diag(S) F of one channel as a dense (N, N) matrix, applied to the basis."""
    R = S_full.shape[-1]
    eye = np.eye(R * R).reshape(R * R, R, R)
    cols = np.fft.ifft2(S_full[None] * np.fft.fft2(eye, norm="ortho"), norm="ortho").real
    return cols.reshape(R * R, R * R).T


def test_power_spectrum_normalised_to_pixel_variance():
    S = power_spectrum(16, 2.0, (0.1, 0.2, 0.3))
    np.testing.assert_allclose(S.mean(axis=(1, 2)), [0.01, 0.04, 0.09])
    np.testing.assert_allclose(S, np.flip(np.roll(S, -1, axis=(1, 2)), axis=(1, 2)))  # S(f) = S(-f)


def test_log_likelihood_matches_dense_gaussian():
    from scipy.stats import multivariate_normal

    pipe = build_oracle_pipeline(resolution=4, concepts=["disc", "clouds"])
    u = pipe.unet
    ph = u.physics()
    a = torch.tensor([0.37], dtype=torch.float64)
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, _, ll = u._terms(x, a)
    for k in range(2):
        want = 0.0
        for c in range(3):
            cov = 0.37 * _dense_cov(ph["spectrum_full"][k, c].numpy()) + 0.63 * np.eye(16)
            mean = np.sqrt(0.37) * ph["mu"][k, c].numpy().ravel()
            want += multivariate_normal(mean, cov).logpdf(x[0, c].numpy().ravel())
        np.testing.assert_allclose(ll[0, k].item(), want, rtol=1e-10)


@settings(max_examples=15)
@given(st.floats(0.01, 0.99), st.integers(0, 1000))
def test_single_concept_eps_is_dense_wiener_filter(abar, seed):
    pipe = build_oracle_pipeline(resolution=4, concepts=["grass"])
    ph = pipe.unet.physics()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    eps, x0 = pipe.unet.eps_and_x0(x, torch.tensor([abar], dtype=torch.float64))
    for c in range(3):
        Sig = _dense_cov(ph["spectrum_full"][0, c].numpy())
        V = abar * Sig + (1 - abar) * np.eye(16)
        r = x[0, c].numpy().ravel() - np.sqrt(abar) * ph["mu"][0, c].numpy().ravel()
        want_eps = np.sqrt(1 - abar) * np.linalg.solve(V, r)
        want_x0 = ph["mu"][0, c].numpy().ravel() + np.sqrt(abar) * Sig @ np.linalg.solve(V, r)
        np.testing.assert_allclose(eps[0, c].numpy().ravel(), want_eps, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(x0[0, c].numpy().ravel(), want_x0, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("prompt", ["", "horizon"])
def test_posterior_mean_matches_monte_carlo(prompt):
    """E[x0 | x_t, c] of the oracle vs self-normalised importance sampling from the prior."""
    pipe = build_oracle_pipeline(resolution=2, concepts=["horizon", "grass", "clouds"])
    u = pipe.unet
    names = u.concept_names
    w = concept_weights(prompt, names)
    abar = 0.3
    g = torch.Generator().manual_seed(0)
    x0_true = u.sample_x0(1, g, weights=w)
    x_t = np.sqrt(abar) * x0_true + np.sqrt(1 - abar) * torch.randn(x0_true.shape, generator=g, dtype=torch.float64)
    n = 400_000
    draws = u.sample_x0(n, g, weights=w)
    logw = -((x_t - np.sqrt(abar) * draws) ** 2).sum((1, 2, 3)) / (2 * (1 - abar))
    wts = torch.softmax(logw, 0)
    ess = 1.0 / (wts**2).sum()
    assert ess > 2000
    mc = (wts[:, None, None, None] * draws).sum(0)
    mc_sd = torch.sqrt((wts[:, None, None, None] * (draws - mc) ** 2).sum(0) / ess)
    emb = torch.tensor(w, dtype=torch.float64)[None, None]
    _, x0 = u.eps_and_x0(x_t, torch.tensor([abar], dtype=torch.float64), emb)
    assert ((x0[0] - mc).abs() <= 5 * mc_sd + 1e-3).all(), (x0[0] - mc, mc_sd)


def test_concept_weights():
    names = ["disc", "square", "grass"]
    np.testing.assert_array_equal(concept_weights("A Disc of GRASS", names), [1, 0, 1])
    np.testing.assert_array_equal(concept_weights("", names), [1, 1, 1])
    np.testing.assert_array_equal(concept_weights("discotheque", names), [1, 1, 1])  # whole words only


def test_guidance_vanishes_for_unconditional_prompt():
    pipe = build_oracle_pipeline(resolution=8)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pos, neg = pipe.encode_prompt("no concept named here", True, 2, "cpu")
    e = pipe.unet(torch.cat([x, x]), 500, encoder_hidden_states=torch.cat([neg, pos])).sample
    torch.testing.assert_close(e[:2], e[2:], rtol=0, atol=0)


def test_structure_and_texture_concepts_exist():
    kinds = {c.kind for c in CONCEPT_LIBRARY.values()}
    assert kinds == {"structure", "texture"}
    m = mean_image("disc", 32, (1, 1, 1), (0, 0, 0))
    assert m[:, 16, 16].tolist() == [1, 1, 1] and m[:, 0, 0].tolist() == [0, 0, 0]


def test_oracle_pipeline_deterministic_any_resolution():
    for R in (4, 32):
        pipe = build_oracle_pipeline(resolution=R)
        a, b = (
            pipe("a square", num_inference_steps=5, guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(1)).images
            for _ in range(2)
        )
        assert a.shape == (1, 3, R, R) and torch.isfinite(a).all()
        assert torch.equal(a, b)
