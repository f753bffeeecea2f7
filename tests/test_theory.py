"""Schedules, time adjustment and chromatography (eq. 13–18, 28–35, Theorem 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reschrom import schedules as S
from reschrom import theory

ALL = {name: S.build_schedule(name, spec) for name, spec in S.DEFAULT_SCHEDULES.items()}
ALL["zero_snr"] = S.ddpm_schedule("scaled_linear", 0.00085, 0.012, rescale_betas_zero_snr=True, name="zero_snr")
ALL["flow_shift3"] = S.FlowMatchingSchedule(shift=3.0, name="flow_shift3")
T_GRID = np.linspace(0.0, 1.0, 501)


@pytest.mark.parametrize("name", sorted(ALL))
def test_schedule_monotone_and_finite(name):
    s = ALL[name]
    ls = s.log_snr(T_GRID)
    assert np.isfinite(ls).all()
    assert (np.diff(ls) <= 0).all() and ls[0] > ls[-1]
    a = s.alpha_bar(T_GRID)
    assert ((a >= 0) & (a <= 1)).all()


@pytest.mark.parametrize("name", sorted(ALL))
def test_snr_inverse_roundtrip(name):
    s = ALL[name]
    t = np.linspace(0.01, 0.99, 97)
    back = s.t_frac_from_log_snr(s.log_snr(t))
    np.testing.assert_allclose(back, t, atol=1e-7)


@pytest.mark.parametrize("beta_schedule,kw", [
    ("linear", {"beta_start": 1e-4, "beta_end": 0.02}),
    ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ("squaredcos_cap_v2", {}),
    ("sigmoid", {"beta_start": 1e-4, "beta_end": 0.02}),
])
def test_discrete_schedule_equals_diffusers(beta_schedule, kw):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule, **kw).alphas_cumprod.double().numpy()
    s = S.ddpm_schedule(beta_schedule, **kw)
    k = np.arange(1000)
    np.testing.assert_allclose(s.alpha_bar(s.t_frac_from_native(k)), ref, rtol=1e-10, atol=1e-15)


def test_scheduler_config_file_roundtrip(tmp_path):
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    ref.save_config(tmp_path)
    s = S.schedule_from_config_file(tmp_path, name="sd")
    k = np.arange(1000)
    np.testing.assert_allclose(s.alpha_bar(k / 999), ref.alphas_cumprod.double().numpy(), rtol=1e-10)


def test_scheduler_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="scheduler config not found"):
        S.schedule_from_config_file(tmp_path)
    (tmp_path / "scheduler_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        S.schedule_from_config_file(tmp_path)
    (tmp_path / "scheduler_config.json").write_text(json.dumps({"_class_name": "NoSuchScheduler"}))
    with pytest.raises(ValueError, match="NoSuchScheduler"):
        S.schedule_from_config_file(tmp_path)


def test_flow_matching_from_diffusers_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    s = S.schedule_from_diffusers(FlowMatchEulerDiscreteScheduler(shift=3.0))
    assert isinstance(s, S.FlowMatchingSchedule) and s.shift == 3.0


@pytest.mark.parametrize("name", sorted(ALL))
def test_tau_order_and_tau0(name):
    """τ_0 = t and τ_0 > τ_1 > … strictly (eq. 17), on the unclipped time axis."""
    s = ALL[name]
    t = np.linspace(0.02, 0.98, 49)
    m = np.arange(7)
    tau = theory.time_adjustment(s, t[:, None], m, clip=False)
    np.testing.assert_allclose(tau[:, 0], t, atol=1e-9)
    assert (np.diff(tau, axis=1) < 0).all()


@pytest.mark.parametrize("name", sorted(ALL))
def test_alpha_bar_tau_closed_form(name):
    """ᾱ(τ_m) through SNR⁻¹ equals 4^m ᾱ / ((4^m-1)ᾱ + 1) (eq. 16)."""
    s = ALL[name]
    t = np.linspace(0.05, 0.95, 37)
    for m in range(5):
        tau = theory.time_adjustment(s, t, m, clip=False)
        np.testing.assert_allclose(
            s.alpha_bar(tau), theory.alpha_bar_tau(s.alpha_bar(t), m), rtol=1e-6, atol=1e-12
        )


@given(
    a=st.floats(0.0, 1.0, allow_nan=False),
    levels=st.integers(1, 11),
)
def test_chromatography_is_a_distribution(a, levels):
    s = -np.log(np.maximum(a, 1e-300))
    r = theory.chromatography_natural(s, levels)
    assert np.isfinite(r).all() and (r >= 0).all()
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(ALL))
def test_eq18_numerical_equals_eq34_closed_form(name):
    """r_m(t) by eq. 18 (numerical derivative through SNR⁻¹) = Theorem 1 / eq. 34, to 1e-4."""
    s = ALL[name]
    t = np.linspace(0.0, 1.0, 401)
    r18 = theory.chromatography_derivative(s, t, 7)
    r34 = theory.chromatography(s, t, 7)
    ok = np.isfinite(r18).all(axis=1)
    assert ok.mean() > 0.95  # undefined only where ᾱ is flat (clipped ends)
    np.testing.assert_allclose(r18[ok], r34[ok], atol=1e-4)


@pytest.mark.parametrize("name", ["linear", "cosine", "edm", "flow_matching"])
def test_theorem1_reparametrisation(name):
    """ᾱ'(t') = ᾱ(t(t')) ⇒ r'_m(t') = r_m(t(t')) (Theorem 1), both by eq. 18."""
    base = ALL[name]
    # odd extension so that the warp stays a bijection beyond [0, 1] (where τ_m may lie)
    warped = S.ReparametrizedSchedule(
        base, warp=lambda u: np.sign(u) * u**2, warp_inverse=lambda v: np.sign(v) * np.sqrt(np.abs(v))
    )
    tp = np.linspace(0.05, 0.95, 91)
    r_w = theory.chromatography_derivative(warped, tp, 6)
    r_b = theory.chromatography_derivative(base, tp**2, 6)
    np.testing.assert_allclose(r_w, r_b, atol=2e-4)


def test_cosine_tau_equals_shifted_cosine():
    """Cosine τ_m = the 'simple diffusion' shifted cosine: log-SNR shifted by m·ln 4."""
    s = S.CosineSchedule(s=0.0)
    t = np.linspace(0.05, 0.95, 91)
    for m in range(1, 5):
        # simple diffusion: logsnr_shifted(t) = logsnr_cosine(t) + 2 ln(ratio), ratio = 2^m,
        # with logsnr_cosine(t) = -2 ln tan(π t / 2).
        shifted = -2 * np.log(np.tan(np.pi * t / 2)) + 2 * np.log(2.0**m)
        tau = theory.time_adjustment(s, t, m, clip=False)
        np.testing.assert_allclose(s.log_snr(tau), np.clip(shifted, -40, 40), atol=1e-8)


def test_flow_matching_tau_equals_sd3_shift():
    """Flow-matching τ_m = the SD3/FLUX time shift σ' = sσ/(1+(s-1)σ) with s = 2^{-m} inverse."""
    s = S.FlowMatchingSchedule(shift=1.0)
    t = np.linspace(0.01, 0.99, 99)
    for m in range(1, 6):
        tau = theory.time_adjustment(s, t, m, clip=False)
        # Shifting σ' = kσ/(1+(k-1)σ) with k = 2^m maps the pooled time τ_m back onto t.
        k = 2.0**m
        np.testing.assert_allclose(k * tau / (1 + (k - 1) * tau), t, atol=1e-10)


def test_theory_table_contract():
    df = theory.theory_table(S.build_schedule("linear", S.DEFAULT_SCHEDULES["linear"]), 64, 1000)
    assert list(df.columns) == theory.THEORY_COLUMNS
    assert len(df) == 1000 * 7
    assert sorted(df["resolution"].unique()) == [1, 2, 4, 8, 16, 32, 64]
    np.testing.assert_allclose(df.groupby("t_frac")["r"].sum(), 1.0, atol=1e-12)
    assert df["t"].min() == 0 and df["t"].max() == 999
    assert df["tau_frac"].between(0, 1).all()
    m0 = df[df.m == 0]
    np.testing.assert_allclose(m0["tau_frac"], m0["t_frac"], atol=1e-9)
    np.testing.assert_allclose(m0["lambda"], 1.0)


def test_peaks_move_coarse_to_fine():
    """Coarse levels peak earlier in generation (larger t) than fine ones."""
    for s in ALL.values():
        peaks = theory.peak_times(s, 7)
        assert (np.diff(peaks[::-1]) <= 1e-9).all() or (np.diff(peaks) >= -1e-9).all()
        assert peaks[-1] >= peaks[0]


def test_bad_resolution():
    with pytest.raises(ValueError, match="power"):
        theory.num_levels(48)
