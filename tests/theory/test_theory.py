"""Schedules, time adjustment and chromatography (eq. 13–18, 28–35, Theorem 1)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reschrom.theory import resolution as theory
from reschrom.theory import schedules as S

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


BETA_SCHEDULES = [
    ("linear", {"beta_start": 1e-4, "beta_end": 0.02}),
    ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ("squaredcos_cap_v2", {}),
    ("sigmoid", {"beta_start": 1e-4, "beta_end": 0.02}),
]
F32_ULP = float(np.finfo(np.float32).eps)  # 2^-23


def test_beta_schedules_cover_diffusers():
    assert {b for b, _ in BETA_SCHEDULES} == set(S.DDPM_BETA_SCHEDULES)


@pytest.mark.parametrize("num_train_timesteps", [1000, 50])
@pytest.mark.parametrize("beta_schedule,kw", BETA_SCHEDULES)
def test_numpy_alphas_cumprod_equal_diffusers(beta_schedule, kw, num_train_timesteps):
    """The NumPy ᾱ table (no torch/diffusers import) is diffusers' DDPMScheduler.alphas_cumprod
    to float32 rounding (here bit for bit; 2 ulp allowed for other torch builds)."""
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, **kw)
    ac = S.ddpm_alphas_cumprod(beta_schedule, num_train_timesteps=num_train_timesteps, **kw)
    assert ac.dtype == np.float64 and ac.shape == (num_train_timesteps,)
    np.testing.assert_allclose(ac, ref.alphas_cumprod.double().numpy(), rtol=2 * F32_ULP, atol=0)
    betas = S.ddpm_betas(beta_schedule, num_train_timesteps=num_train_timesteps, **kw)
    np.testing.assert_allclose(betas, ref.betas.numpy(), rtol=2 * F32_ULP, atol=0)
    s = S.ddpm_schedule(beta_schedule, num_train_timesteps=num_train_timesteps, **kw)
    k = np.arange(num_train_timesteps)
    np.testing.assert_allclose(s.alpha_bar(s.t_frac_from_native(k)), ac, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("num_train_timesteps", [1000, 50])
@pytest.mark.parametrize("beta_schedule,kw", BETA_SCHEDULES)
def test_numpy_zero_terminal_snr_equals_diffusers(beta_schedule, kw, num_train_timesteps):
    """rescale_betas_zero_snr: NumPy rescales in float64 and stores float32, so it equals
    diffusers' algorithm run in float64 to float32 rounding (a few ulp of 1), and diffusers'
    own float32 table up to that table's round-off (its √ᾱ - √ᾱ_T cancels: ~1e-6)."""
    import torch
    from diffusers import DDPMScheduler
    from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

    kw = {"num_train_timesteps": num_train_timesteps, "beta_schedule": beta_schedule, **kw}
    ref32 = DDPMScheduler(rescale_betas_zero_snr=True, **kw).alphas_cumprod.double().numpy()
    betas64 = rescale_zero_terminal_snr(DDPMScheduler(**kw).betas.double()).float()
    ref64 = torch.cumprod(1.0 - betas64.double(), 0).numpy()
    ac = S.ddpm_alphas_cumprod(rescale_betas_zero_snr=True, **kw)
    assert ac[-1] == 0.0 and ref32[-1] == 0.0
    np.testing.assert_allclose(ac, ref64, rtol=0, atol=8 * F32_ULP)
    np.testing.assert_allclose(ac, ref32, rtol=0, atol=2e-6)


def test_ddpm_schedule_imports_no_torch():
    code = (
        "import sys; from reschrom.theory.schedules import build_schedule, DEFAULT_SCHEDULES; "
        "[build_schedule(n, s).alpha_bar(0.5) for n, s in DEFAULT_SCHEDULES.items()]; "
        "bad = [m for m in ('torch', 'diffusers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_beta_schedule():
    with pytest.raises(ValueError, match="beta_schedule 'laplacian' is unknown"):
        S.ddpm_schedule("laplacian")


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


@given(
    a=st.floats(1e-12, 1.0 - 1e-12, allow_nan=False),
    levels=st.integers(1, 9),
)
def test_chromatography_is_each_level_signal_share_times_its_noise_share(a, levels):
    """r_m ∝ p_m(1 − p_m) with p_m = ᾱ_{τ_m} of eq. 16 (SNR_{τ_m} = 4^m·SNR, so every level's
    d log SNR/dt is the same): the identity docs/guidance.md builds the chroma_onset rule on,
    computed here from eq. 16 directly, not from the code's eq. 34 form."""
    k = 4.0 ** np.arange(levels)
    p = k * a / ((k - 1.0) * a + 1.0)
    q = p * ((1.0 - a) / ((k - 1.0) * a + 1.0))  # 1 − p without cancellation
    r = theory.chromatography_natural(-np.log(a), levels)
    np.testing.assert_allclose(r, q / q.sum(), rtol=1e-9, atol=1e-15)


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
    for bad, match in [(0, "positive integer"), (-4, "positive integer"), (12.5, "positive integer")]:
        with pytest.raises(ValueError, match=match) as e:
            theory.num_levels(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="kernel must be an integer ≥ 2"):
        theory.num_levels(64, 1)


# -- resolutions R = c·n^K that are not powers of n ---------------------------------------


@pytest.mark.parametrize(
    ("resolution", "kernel", "levels"),
    [
        (64, 2, [64, 32, 16, 8, 4, 2, 1]),
        (1, 2, [1]),
        (28, 2, [28, 14, 7]),
        (12, 2, [12, 6, 3]),
        (20, 2, [20, 10, 5]),
        (48, 2, [48, 24, 12, 6, 3]),
        (96, 2, [96, 48, 24, 12, 6, 3]),
        (7, 2, [7]),
        (81, 3, [81, 27, 9, 3, 1]),
        (36, 3, [36, 12, 4]),
        (12, 4, [12, 3]),
    ],
)
def test_level_resolutions(resolution, kernel, levels):
    assert theory.num_levels(resolution, kernel) == len(levels)
    assert theory.level_resolutions(resolution, kernel).tolist() == levels


@given(c=st.integers(1, 40), k=st.integers(0, 6), n=st.integers(2, 4))
def test_num_levels_counts_divisions(c, k, n):
    """R = c·n^K with n ∤ c has K + 1 levels, the last of side c."""
    if c % n == 0:
        c += 1
    r = c * n**k
    assert theory.num_levels(r, n) == k + 1
    lv = theory.level_resolutions(r, n)
    assert lv[-1] == c and (lv[:-1] == n * lv[1:]).all()


@pytest.mark.parametrize("resolution", [12, 20, 28, 48, 96])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_theory_table_any_resolution(resolution, name):
    """At R = c·2^K the table has K + 1 levels, its resolution column the level sides."""
    df = theory.theory_table(ALL[name], resolution, 50)
    levels = theory.level_resolutions(resolution).tolist()
    assert list(df.columns) == theory.THEORY_COLUMNS and len(df) == 50 * len(levels)
    assert sorted(df["resolution"].unique(), reverse=True) == levels
    assert (df.groupby("m")["resolution"].first().to_numpy() == levels).all()
    np.testing.assert_allclose(df.groupby("t_frac")["r"].sum(), 1.0, atol=1e-12)
    # a level's time adjustment depends on m only, not on R: the first rows match R = 2^K
    ref = theory.theory_table(ALL[name], 2 ** (len(levels) - 1), 50)
    np.testing.assert_allclose(df["r"], ref["r"], rtol=0, atol=0)
    np.testing.assert_allclose(df["tau_frac"], ref["tau_frac"], rtol=0, atol=0)


def test_theory_table_mnist():
    df = theory.theory_table(ALL["linear"], 28, 1000)
    assert sorted(df["resolution"].unique()) == [7, 14, 28]
    assert df["m"].max() == 2 and len(df) == 3000


@given(a=st.floats(0.0, 1.0, allow_nan=False), resolution=st.sampled_from([12, 20, 28, 48, 96, 64]))
def test_chromatography_any_resolution_sums_to_one(a, resolution):
    M = theory.num_levels(resolution)
    r = theory.chromatography_natural(-np.log(np.maximum(a, 1e-300)), M)
    assert r.shape == (M,) and (r >= 0).all()
    np.testing.assert_allclose(r.sum(), 1.0, atol=1e-12)


def test_guidance_frame_resolution_28():
    """A probe of a 28×28 tensor records 3 levels; the frame labels them 28, 14, 7."""
    import torch

    from reschrom.measure.probe import ProbeResult, guidance_frame
    from reschrom.theory import pyramid

    g = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    e = pyramid.band_energies(g).numpy()  # (B, M)
    energies = np.broadcast_to(e[None, None], (4, 3, 2, 3)).copy()
    res = ProbeResult(timesteps=np.array([999.0, 666.0, 333.0, 0.0]), energies=energies)
    ac = ALL["linear"].alpha_bar(np.linspace(0, 1, 1000))
    kw = dict(model="m", prompt_id="p", prompt="p", seed=0, alphas_cumprod=ac)
    df = guidance_frame(res, resolution=28, **kw)
    assert len(df) == 4 * 2 * 3
    assert df.groupby("m")["resolution"].first().tolist() == [28, 14, 7]
    assert guidance_frame(res, **kw)["resolution"].max() == 4  # fallback: a power of two, 2^(M-1)
    with pytest.raises(ValueError, match="levels"):
        guidance_frame(res, resolution=64, **kw)


def test_aggregation_and_agreement_keep_resolution_28(tmp_path):
    """Dumps at 28×28 (levels 28, 14, 7) aggregate into a 3-level table with those sides."""
    import pandas as pd

    from reschrom.io import write_parquet
    from reschrom.measure.aggregate import aggregate_chromatography, theory_for_alpha_bar
    from reschrom.measure.agreement import agreement_table

    ab = np.linspace(0.999, 0.001, 12)
    th = theory_for_alpha_bar(ab, 3)
    sides = [28, 14, 7]
    paths = []
    for k in range(2):
        rows = [
            dict(model="syn", prompt_id=f"p{k}", prompt=f"p{k}", seed=0, sample=b, step=s, t=float(11 - s),
                 t_frac=(11 - s) / 11, m=m, resolution=sides[m], energy_guidance=th[s, m] * (1 + k + b),
                 energy_cond=1.0, energy_uncond=1.0, alpha_bar=ab[s])
            for b in range(2) for s in range(12) for m in range(3)
        ]
        path = tmp_path / f"p{k}.parquet"
        write_parquet(pd.DataFrame(rows), path)
        paths.append(path)
    out = aggregate_chromatography(paths)
    assert len(out) == 12 * 3
    assert out.groupby("m")["resolution"].first().tolist() == sides
    np.testing.assert_allclose(out.groupby("t_frac")["r_measured"].sum(), 1.0)
    np.testing.assert_allclose(out["r_measured"], out["r_theory"], atol=1e-12)
    agr = agreement_table(out, "syn")
    assert agr["m"].tolist() == [0, 1, 2] and agr["resolution"].tolist() == sides
    np.testing.assert_allclose(agr["peak_t_diff"], 0.0)
    assert agr["jsd_mean"].iloc[0] == pytest.approx(0.0, abs=1e-12)
