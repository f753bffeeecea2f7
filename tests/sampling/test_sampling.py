"""Sampling loop (eq. 4, DDPM), thresholding (Algorithm 1) and composite predictors (eq. 22, 24)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from hypothesis import given, settings
from hypothesis import strategies as st

from reschrom.sampling import samplers as sampling
from reschrom.theory import levels, pyramid
from reschrom.theory import resolution as theory


@pytest.fixture(scope="module")
def sched_config():
    return dict(DDPMScheduler(num_train_timesteps=1000, clip_sample=False).config)


@pytest.fixture(scope="module")
def schedule(sched_config):
    return sampling.schedule_of(sched_config)


def _noise(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def perfect_two_level(E: torch.Tensor):
    """ε_low returns 2D[E] (the unit-variance noise of λD[x_t]), ε_res returns E - UD[E]."""
    eps_low = lambda x, t: 2 * pyramid.downsample(E, 1)  # noqa: E731
    eps_res = lambda x, t: E - pyramid.project(E, 1)  # noqa: E731
    return eps_low, eps_res


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.floats(0, 999), tau=st.booleans(), lam=st.booleans())
def test_two_level_composite_is_exact_with_perfect_predictors(schedule, seed, t, tau, lam):
    E = _noise((2, 3, 8, 8), seed)
    x = _noise((2, 3, 8, 8), seed + 1)
    eps_low, eps_res = perfect_two_level(E)
    # the known-ε predictors ignore their inputs, so every ablation must telescope too
    eps = sampling.cascade_predictor(eps_low, eps_res, schedule, time_adjustment=tau, intensity_rescaling=lam)
    torch.testing.assert_close(eps(x, torch.tensor([t, t])), E, rtol=0, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), M=st.integers(1, 5))
def test_multilevel_sum_is_exact_with_perfect_predictors(schedule, seed, M):
    E = _noise((2, 3, 16, 16), seed)
    x = _noise((2, 3, 16, 16), seed + 1)

    def level_target(m):  # 2^m (D^m E - U D^{m+1} E), no subtraction at the coarsest level
        Dm = pyramid.downsample(E, m)
        if m < M - 1:
            Dm = Dm - pyramid.project(Dm, 1)
        return 2**m * Dm

    preds = [lambda x, t, m=m: level_target(m) for m in range(M)]
    eps = sampling.multilevel_predictor(preds, schedule)
    torch.testing.assert_close(eps(x, torch.tensor([500.0, 20.0])), E, rtol=0, atol=1e-12)


def test_composite_feeds_each_level_its_rescaled_view_and_adjusted_time(schedule):
    """The level-m model sees λ^(m) D^m[x_t] at τ_m with ᾱ_{τ_m} = 4^m ᾱ_t/(3^… ) (eq. 16)."""
    seen = {}

    def spy(m):
        def f(x, t):
            seen[m] = (x.clone(), t.clone())
            return torch.zeros_like(x)

        return f

    x = _noise((2, 3, 8, 8), 3)
    t = torch.tensor([700.0, 300.0])
    sampling.multilevel_predictor([spy(0), spy(1), spy(2)], schedule)(x, t)
    a = sampling._alpha_bar(schedule, t)
    for m in range(3):
        xm, tau = seen[m]
        lam = torch.as_tensor(theory.intensity_factor(a, m)).reshape(-1, 1, 1, 1)
        torch.testing.assert_close(xm, lam * pyramid.downsample(x, m))
        a_tau = schedule.alpha_bar(schedule.t_frac_from_native(tau.double().numpy()))
        np.testing.assert_allclose(a_tau, theory.alpha_bar_tau(a, m), rtol=1e-4)
        assert m == 0 or (tau < t).all()
    # ablations: τ := t and λ := 1
    sampling.multilevel_predictor([spy(0), spy(1)], schedule, time_adjustment=False, intensity_rescaling=False)(x, t)
    torch.testing.assert_close(seen[1][0], pyramid.downsample(x, 1))
    torch.testing.assert_close(seen[1][1], t)


def test_level_time_matches_theory_time_adjustment(schedule):
    t = torch.tensor([100.0, 400.0, 900.0])
    tau = levels.level_time(schedule, schedule, t, 1)
    expect = schedule.native_t(theory.time_adjustment(schedule, schedule.t_frac_from_native(t.double().numpy()), 1))
    np.testing.assert_allclose(tau.double().numpy(), expect, rtol=1e-5)
    assert not np.allclose(tau.numpy(), np.round(tau.numpy()))  # continuous, not integer steps


@pytest.mark.parametrize("mode", ["multires", "static"])
def test_threshold_keeps_pixels_in_range(mode):
    a = 0.3
    x = 3 * _noise((4, 3, 16, 16), 0)
    e = _noise((4, 3, 16, 16), 1)
    e2 = sampling.threshold_eps(x, e, a, mode)
    x0 = levels.x0_from_eps(x, e2, a)
    assert x0.abs().max() <= 1 + 1e-9
    assert (levels.x0_from_eps(x, e, a).abs() > 1).any()  # there was something to clamp


@pytest.mark.parametrize("mode", ["multires", "static"])
def test_threshold_leaves_in_range_x0_unchanged(mode):
    a = 0.4
    x0 = 0.9 * torch.tanh(_noise((4, 3, 16, 16), 2))
    # Algorithm 1 clamps every level's running estimate: an in-range x̂0 at full resolution
    # has in-range averages at every coarser level too, so nothing changes.
    e = _noise((4, 3, 16, 16), 3)
    x = math.sqrt(a) * x0 + math.sqrt(1 - a) * e
    torch.testing.assert_close(sampling.threshold_eps(x, e, a, mode), e, rtol=0, atol=1e-9)
    torch.testing.assert_close(levels.multires_static_threshold(x, e, a), x0, rtol=0, atol=1e-9)


def test_ddim_sampler_equals_handwritten_eq4(sched_config):
    steps = 10
    sched = sampling.make_scheduler("ddim", sched_config)
    x_T = sampling.initial_noise((2, 3, 8, 8), 0, dtype=torch.float64)
    c = _noise((1, 3, 8, 8), 5)
    eps_fn = lambda x, t: 0.5 * x + c * (t / 1000).reshape(-1, 1, 1, 1)  # noqa: E731
    got = sampling.sample(eps_fn, sched, x_T.clone(), steps, progress=False)

    ac = sched.alphas_cumprod.double()
    x = x_T.clone()
    stride = 1000 // steps
    for t in range(1000 - stride, -1, -stride):  # "leading" spacing: 900, 800, … 0
        a_prev = float(ac[t - stride]) if t - stride >= 0 else 1.0
        e = eps_fn(x, torch.full((2,), float(t), dtype=torch.float64))
        x = sampling.ddim_step_reference(x, e, float(ac[t]), a_prev)
    torch.testing.assert_close(got, x, rtol=1e-6, atol=1e-6)


def test_ddpm_sampler_is_seeded(sched_config):
    sched = sampling.make_scheduler("ddpm", sched_config)
    x_T = sampling.initial_noise((2, 3, 8, 8), 0)
    eps_fn = lambda x, t: 0.9 * x  # noqa: E731
    run = lambda s: sampling.sample(eps_fn, sched, x_T, 8, torch.Generator().manual_seed(s), progress=False)  # noqa: E731
    torch.testing.assert_close(run(1), run(1))
    assert not torch.allclose(run(1), run(2))


def test_initial_noise_is_device_independent_and_seeded():
    a = sampling.initial_noise((2, 3, 4, 4), 7)
    torch.testing.assert_close(a, sampling.initial_noise((2, 3, 4, 4), 7))
    assert not torch.allclose(a, sampling.initial_noise((2, 3, 4, 4), 8))


def test_unet_predictor_uses_continuous_timesteps():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()
    eps = sampling.unet_predictor(unet)
    x = torch.randn(2, 3, 8, 8)
    e_mid = eps(x, torch.tensor([10.5, 10.5]))
    assert not torch.allclose(e_mid, eps(x, torch.tensor([10.0, 10.0])))
    assert not torch.allclose(e_mid, eps(x, torch.tensor([11.0, 11.0])))
    with torch.no_grad():
        torch.testing.assert_close(e_mid, unet(x, torch.tensor([10.5, 10.5])).sample)


def test_make_scheduler_rejects_unknown_and_disables_its_own_clipping(sched_config):
    with pytest.raises(ValueError, match="sampler"):
        sampling.make_scheduler("euler", sched_config)
    s = sampling.make_scheduler("ddim", {**sched_config, "clip_sample": True})
    assert s.config.clip_sample is False


def test_level_time_through_a_level_models_own_schedule(sched_config, schedule):
    """A level model loaded with its own (equal) schedule is asked at the τ_m of training,
    which uses the full-resolution schedule itself (``level_schedule=None``)."""
    own = sampling.schedule_of(DDPMScheduler.from_config(sched_config), name="level model")
    t = torch.tensor([0.0, 7.0, 250.0, 999.0])
    for m in (0, 1, 2):
        want = levels.level_time(schedule, None, t, m)
        torch.testing.assert_close(levels.level_time(schedule, own, t, m), want, rtol=1e-5, atol=1e-4)
