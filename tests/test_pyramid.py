"""Identities of the pooling pyramid (DESIGN.md; eq. 14–16, 19; Algorithm 1)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reschrom import pyramid, theory

sizes = st.sampled_from([1, 2, 4, 8, 16, 32])


def _rand(seed: int, b: int, c: int, size: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, size, size, generator=g, dtype=dtype)


@given(seed=st.integers(0, 2**31), size=sizes, c=st.integers(1, 4))
def test_down_up_is_identity(seed, size, c):
    """DU = I (and UD ≠ I unless the image is block constant)."""
    x = _rand(seed, 2, c, size)
    assert torch.equal(pyramid.downsample(pyramid.upsample(x)), x)
    if size >= 2:
        assert not torch.allclose(pyramid.upsample(pyramid.downsample(x)), x)


@given(seed=st.integers(0, 2**31), size=sizes, c=st.integers(1, 3))
def test_bands_sum_to_input_and_are_orthogonal(seed, size, c):
    x = _rand(seed, 3, c, size)
    bands = pyramid.band_decompose(x)
    assert len(bands) == theory.num_levels(size)
    torch.testing.assert_close(pyramid.band_reconstruct(bands), x, rtol=0, atol=1e-12)
    for i in range(len(bands)):
        for j in range(i + 1, len(bands)):
            inner = (bands[i] * bands[j]).sum(dim=(1, 2, 3))
            torch.testing.assert_close(inner, torch.zeros_like(inner), rtol=0, atol=1e-9)
    e = pyramid.band_energies(x)
    direct = torch.stack([b.pow(2).sum(dim=(1, 2, 3)) for b in bands], 1)
    torch.testing.assert_close(e, direct, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(e.sum(1), x.pow(2).sum(dim=(1, 2, 3)), rtol=1e-10, atol=1e-10)


@given(seed=st.integers(0, 2**31), size=st.sampled_from([2, 4, 8, 16]))
def test_relative_energies_sum_to_one(seed, size):
    r = pyramid.relative_band_energies(_rand(seed, 4, 3, size, torch.float32))
    assert (r >= 0).all()
    torch.testing.assert_close(r.sum(1), torch.ones(4), rtol=0, atol=1e-5)


def test_band_of_constant_image_is_coarsest():
    x = torch.full((1, 3, 8, 8), 0.7)
    e = pyramid.band_energies(x)
    assert e[0, :-1].abs().max() < 1e-10 and e[0, -1] > 0


@pytest.mark.parametrize("m", [0, 1, 2, 3])
def test_pooled_white_noise_std(m):
    """D^m of unit white noise has std 2^-m; its n^m-rescaled version is unit variance."""
    eps = torch.randn(256, 3, 32, 32, generator=torch.Generator().manual_seed(m))
    d = pyramid.downsample(eps, m)
    n = d.numel()
    tol = 5.0 / math.sqrt(2 * n)  # five standard errors of a sample std
    assert abs(d.std().item() / 2.0**-m - 1.0) < tol
    assert abs((2**m * d).var().item() - 1.0) < 2 * tol


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("alpha_bar", [0.05, 0.5, 0.9])
def test_intensity_factor_gives_unit_variance(m, alpha_bar):
    """λ^(m) D^m[x_t] has unit variance when x0 is constant on 2^m blocks with unit variance."""
    g = torch.Generator().manual_seed(7)
    coarse = torch.randn(256, 3, 32 // 2**m, 32 // 2**m, generator=g, dtype=torch.float64)
    x0 = pyramid.upsample(coarse, m)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps
    lam = float(theory.intensity_factor(alpha_bar, m))
    v = (lam * pyramid.downsample(x_t, m)).var().item()
    assert abs(v - 1.0) < 0.05


def test_level_x0_equals_pooled_posterior_mean():
    x_t, eps = _rand(1, 2, 3, 16), _rand(2, 2, 3, 16)
    a = 0.3
    x0 = (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
    for m in range(5):
        torch.testing.assert_close(pyramid.level_x0(x_t, eps, a, m), pyramid.downsample(x0, m))


@given(seed=st.integers(0, 2**31), scale=st.floats(0.1, 10.0), a=st.floats(0.01, 0.99))
def test_static_threshold_bounds_and_identity(seed, scale, a):
    """Algorithm 1 keeps every pixel in [-1, 1] and leaves an in-range x̂0 unchanged."""
    eps = _rand(seed, 2, 3, 16)
    x0 = scale * _rand(seed + 1, 2, 3, 16)
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    out = pyramid.multires_static_threshold(x_t, eps, a)
    assert out.abs().max() <= 1.0 + 1e-12
    torch.testing.assert_close(out, pyramid.coarse_to_fine_clamp(x0), rtol=1e-9, atol=1e-9)
    inside = x0.clamp(-0.999, 0.999) * 0.5
    x_t2 = math.sqrt(a) * inside + math.sqrt(1 - a) * eps
    torch.testing.assert_close(pyramid.multires_static_threshold(x_t2, eps, a), inside, rtol=1e-8, atol=1e-8)


def test_bad_shapes():
    with pytest.raises(ValueError, match="power"):
        pyramid.band_energies(torch.zeros(1, 1, 12, 12))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        pyramid.band_energies(torch.zeros(12, 12))
