"""Identities of the pooling pyramid (docs/DESIGN.md; eq. 14–16, 19; Algorithm 1)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reschrom.theory import levels, pyramid
from reschrom.theory import resolution as theory

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
        torch.testing.assert_close(levels.level_x0(x_t, eps, a, m), pyramid.downsample(x0, m))


@given(seed=st.integers(0, 2**31), scale=st.floats(0.1, 10.0), a=st.floats(0.01, 0.99))
def test_static_threshold_bounds_and_identity(seed, scale, a):
    """Algorithm 1 keeps every pixel in [-1, 1] and leaves an in-range x̂0 unchanged."""
    eps = _rand(seed, 2, 3, 16)
    x0 = scale * _rand(seed + 1, 2, 3, 16)
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    out = levels.multires_static_threshold(x_t, eps, a)
    assert out.abs().max() <= 1.0 + 1e-12
    torch.testing.assert_close(out, pyramid.coarse_to_fine_clamp(x0), rtol=1e-9, atol=1e-9)
    inside = x0.clamp(-0.999, 0.999) * 0.5
    x_t2 = math.sqrt(a) * inside + math.sqrt(1 - a) * eps
    torch.testing.assert_close(levels.multires_static_threshold(x_t2, eps, a), inside, rtol=1e-8, atol=1e-8)


def test_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        pyramid.band_energies(torch.zeros(1, 1, 12, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        pyramid.band_energies(torch.zeros(12, 12))
    with pytest.raises(ValueError, match="kernel") as e:
        pyramid.band_energies(torch.zeros(1, 1, 12, 12), kernel=1)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="divisible by 2\\^3 = 8") as e:
        pyramid.downsample(torch.zeros(1, 1, 28, 28), 3)  # 28 = 7·2²: only two poolings
    assert "\n" not in str(e.value)


# -- resolutions R = c·n^K that are not powers of n ---------------------------------------

ANY_SIZES = [1, 2, 3, 4, 6, 7, 12, 16, 20, 28, 32, 48, 64, 96]
LEVELS = {1: [1], 3: [3], 7: [7], 12: [12, 6, 3], 20: [20, 10, 5], 28: [28, 14, 7],
          48: [48, 24, 12, 6, 3], 64: [64, 32, 16, 8, 4, 2, 1], 96: [96, 48, 24, 12, 6, 3]}


@pytest.mark.parametrize("size", sorted(LEVELS))
def test_levels_of_any_resolution(size):
    """M = K + 1 levels of side R/n^m, ending at c×c (1×1 only for a power of two)."""
    x = _rand(0, 1, 1, size)
    assert pyramid.band_energies(x).shape == (1, len(LEVELS[size]))
    assert [pyramid.downsample(x, m).shape[-1] for m in range(len(LEVELS[size]))] == LEVELS[size]
    assert len(pyramid.band_decompose(x)) == theory.num_levels(size) == len(LEVELS[size])


@given(seed=st.integers(0, 2**31), size=st.sampled_from(ANY_SIZES), c=st.integers(1, 3))
def test_bands_of_any_resolution_sum_and_are_orthogonal(seed, size, c):
    """Σ_m g^(m) = x, the bands are orthogonal and Σ_m ‖g^(m)‖² = ‖x‖² (float64, rel 1e-10)."""
    x = _rand(seed, 2, c, size)
    bands = pyramid.band_decompose(x)
    M = theory.num_levels(size)
    assert len(bands) == M and all(b.shape == x.shape for b in bands)
    torch.testing.assert_close(pyramid.band_reconstruct(bands), x, rtol=0, atol=1e-12)
    for i in range(M):
        for j in range(i + 1, M):
            inner = (bands[i] * bands[j]).sum(dim=(1, 2, 3))
            torch.testing.assert_close(inner, torch.zeros_like(inner), rtol=0, atol=1e-9)
    e = pyramid.band_energies(x)
    assert e.shape == (2, M)
    direct = torch.stack([b.pow(2).sum(dim=(1, 2, 3)) for b in bands], 1)
    torch.testing.assert_close(e, direct, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(e.sum(1), x.pow(2).sum(dim=(1, 2, 3)), rtol=1e-10, atol=0)
    r = pyramid.relative_band_energies(x)
    torch.testing.assert_close(r.sum(1), torch.ones(2, dtype=r.dtype), rtol=0, atol=1e-12)


@given(seed=st.integers(0, 2**31), size=st.sampled_from([12, 20, 28, 48, 96, 16, 64]))
def test_coarsest_band_is_coarsest_projection(seed, size):
    """g^(M-1) = U^{M-1} D^{M-1} x: constant on n^{M-1} blocks, holding the full c×c content."""
    x = _rand(seed, 2, 2, size)
    M = theory.num_levels(size)
    k = 2 ** (M - 1)
    top = pyramid.band_decompose(x)[-1]
    torch.testing.assert_close(top, pyramid.project(x, M - 1), rtol=0, atol=0)
    blocks = top.reshape(2, 2, size // k, k, size // k, k)
    assert (blocks == blocks[:, :, :, :1, :, :1]).all()
    # the c×c content is kept entirely: D^{M-1} of the band is D^{M-1} x
    torch.testing.assert_close(pyramid.downsample(top, M - 1), pyramid.downsample(x, M - 1), rtol=0, atol=1e-12)
    assert pyramid.downsample(x, M - 1).shape[-1] == theory.level_resolutions(size)[-1]


def test_mnist_28_bands():
    """28 = 7·2²: three bands (28, 14, 7); a 7×7-block-constant image lives in the coarsest."""
    coarse = _rand(3, 1, 1, 7)
    x = pyramid.upsample(coarse, 2)
    e = pyramid.band_energies(x)
    assert e.shape == (1, 3)
    assert e[0, :2].abs().max() < 1e-20
    torch.testing.assert_close(e[0, 2], x.pow(2).sum(), rtol=1e-12, atol=0)


@given(seed=st.integers(0, 2**31), size=st.sampled_from([12, 28, 48]), scale=st.floats(0.1, 10.0),
       a=st.floats(0.01, 0.99))
def test_static_threshold_any_resolution(seed, size, scale, a):
    """Algorithm 1 at R = c·2^K starts from the c×c level and stays within [-1, 1]."""
    eps = _rand(seed, 2, 3, size)
    x0 = scale * _rand(seed + 1, 2, 3, size)
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    out = levels.multires_static_threshold(x_t, eps, a)
    assert out.shape == x0.shape and out.abs().max() <= 1.0 + 1e-12
    torch.testing.assert_close(out, pyramid.coarse_to_fine_clamp(x0), rtol=1e-9, atol=1e-9)
    inside = x0.clamp(-0.999, 0.999) * 0.5
    torch.testing.assert_close(pyramid.coarse_to_fine_clamp(inside), inside, rtol=0, atol=1e-12)
    M = theory.num_levels(size)
    torch.testing.assert_close(levels.level_x0(x_t, eps, a, M - 1), pyramid.downsample(
        (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a), M - 1))
