"""Time adjustment, intensity factor and resolution chromatography (paper §3).

Level m of a sample is its m-fold average pooling D^m (kernel n, default 2), a grid of
side R/n^m; a resolution R = c·n^K (c not divisible by n) has M = K + 1 levels, the
coarsest c×c (1×1 for a power of n, 7×7 for 28 = 7·2²). Pooling n×n pixels divides
the noise variance by n², so the level-m view of x_t is itself a diffusion sample at an
earlier, less noisy time τ_m (eq. 14–16):

    x^(m)_{τ_m} = λ^(m)_t D^m[x_t],  λ^(m)_t = n^m / √(1 + (n^{2m} - 1) ᾱ_t),
    τ_m = SNR⁻¹(n^{2m} · SNR(t)),    ᾱ_{τ_m} = n^{2m} ᾱ_t / ((n^{2m} - 1) ᾱ_t + 1).

The resolution chromatography r_m(t) (eq. 18) is the share of level m in the rate at which
signal is generated, r_m ∝ dᾱ_{τ_m}/dt, normalised over levels. By Theorem 1 it depends on
the schedule only through ᾱ_t, and the natural schedule ᾱ_s = e^{-s} gives it in closed
form (eq. 34): r*_m(s) ∝ n^{2m} e^s / (e^s + n^{2m} - 1)².

With n = 2 the paper's "4^m" and "2^m" appear; every function here takes the kernel n.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reschrom.theory.schedules import LOG_SNR_LIMIT, ArrayLike, Schedule


def num_levels(resolution: int, kernel: int = 2) -> int:
    """M = K + 1 levels for a resolution R = c·n^K with c not divisible by n.

    Level m = 0 … K has side R/n^m; the coarsest (c×c, 1×1 for R = n^K) holds everything
    at or below that size. E.g. 64 → 7 levels (64 … 1), 28 = 7·2² → 3 (28, 14, 7),
    48 = 3·2⁴ → 5 (48 … 3); an R not divisible by n has the single level m = 0.
    """
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if isinstance(kernel, bool) or int(kernel) != kernel or kernel < 2:
        raise ValueError(f"kernel must be an integer ≥ 2, got {kernel!r}")
    r, n, k = int(resolution), int(kernel), 0
    while r % n == 0:
        r //= n
        k += 1
    return k + 1


def level_resolutions(resolution: int, kernel: int = 2) -> np.ndarray:
    """Side length of each level m = 0 … M-1: R, R/n, …, c (c = 1 when R = n^K)."""
    m = np.arange(num_levels(resolution, kernel))
    return int(resolution) // int(kernel) ** m


def _scale(m: ArrayLike, kernel: int) -> np.ndarray:
    """n^{2m}: the SNR gain of m-fold n×n average pooling (the paper's 4^m)."""
    return float(kernel) ** (2 * np.asarray(m, dtype=np.float64))


def intensity_factor(alpha_bar: ArrayLike, m: ArrayLike, kernel: int = 2) -> np.ndarray:
    """λ^(m)_t = n^m / √(1 + (n^{2m} - 1) ᾱ_t) (eq. 13, 16): rescales D^m[x_t] to unit variance."""
    a = np.asarray(alpha_bar, dtype=np.float64)
    s = _scale(m, kernel)
    return np.sqrt(s) / np.sqrt(1.0 + (s - 1.0) * a)


def alpha_bar_tau(alpha_bar: ArrayLike, m: ArrayLike, kernel: int = 2) -> np.ndarray:
    """ᾱ_{τ_m} = n^{2m} ᾱ_t / ((n^{2m} - 1) ᾱ_t + 1) (eq. 16): the level-m signal level."""
    a = np.asarray(alpha_bar, dtype=np.float64)
    s = _scale(m, kernel)
    return s * a / ((s - 1.0) * a + 1.0)


def time_adjustment(
    schedule: Schedule, t_frac: ArrayLike, m: ArrayLike, kernel: int = 2, clip: bool = True
) -> np.ndarray:
    """τ_m = SNR⁻¹(n^{2m} · SNR(t)) (eq. 15–16), as a time fraction.

    τ_0 = t and τ_0 > τ_1 > … (eq. 17). Where n^{2m}·SNR(t) exceeds the schedule's largest
    SNR, τ_m lies before t = 0; ``clip`` (default) clamps it to [0, 1], otherwise the
    schedule's log-SNR is extended linearly.
    """
    ls = schedule.log_snr(t_frac) + np.log(_scale(m, kernel))
    tau = schedule.t_frac_from_log_snr(ls)
    return np.clip(tau, 0.0, 1.0) if clip else tau


def chromatography_natural(s: ArrayLike, num_levels: int, kernel: int = 2) -> np.ndarray:
    """r*_m(s) ∝ n^{2m} e^s / (e^s + n^{2m} - 1)² for the natural schedule ᾱ_s = e^{-s} (eq. 34).

    Returns shape (..., M), normalised over the last axis. Evaluated in the overflow-free
    form n^{2m} ᾱ / (1 + (n^{2m} - 1) ᾱ)² with ᾱ = e^{-s} (the same up to the factor e^{-2s}).
    """
    a = np.exp(-np.asarray(s, dtype=np.float64))[..., None]
    scale = _scale(np.arange(num_levels), kernel)
    w = scale * a / (1.0 + (scale - 1.0) * a) ** 2
    # ᾱ = 0 (pure noise): the limit is ∝ n^{2m}.
    w = np.where(a > 0, w, scale)
    return w / w.sum(axis=-1, keepdims=True)


def chromatography(
    schedule: Schedule, t_frac: ArrayLike, num_levels: int, kernel: int = 2
) -> np.ndarray:
    """r_m(t) for any schedule by Theorem 1 (eq. 34–35): r_m(t) = r*_m(t*), t* = -ln ᾱ_t.

    Returns shape (..., M) with r_m ≥ 0 and Σ_m r_m = 1.
    """
    a = schedule.alpha_bar(t_frac)
    with np.errstate(divide="ignore"):
        s = -np.log(a)
    return chromatography_natural(s, num_levels, kernel)


def chromatography_derivative(
    schedule: Schedule,
    t_frac: ArrayLike,
    num_levels: int,
    kernel: int = 2,
    h: float = 1e-6,
) -> np.ndarray:
    """r_m(t) = (dᾱ_{τ_m}/dt) / Σ_n (dᾱ_{τ_n}/dt) by eq. 18, differentiating numerically.

    ᾱ_{τ_m}(t) = ᾱ(τ_m(t)) is evaluated through the schedule's own SNR⁻¹ (no closed form),
    and differentiated by central differences of step ``h`` (one-sided at t = 0 and 1).
    Where ᾱ is flat (dᾱ/dt = 0, e.g. a clipped end), the ratio is undefined and NaN.
    """
    t = np.asarray(t_frac, dtype=np.float64)
    lo = np.clip(t - h, 0.0, 1.0)
    hi = np.clip(t + h, 0.0, 1.0)
    m = np.arange(num_levels)

    def abar_tau(tt: np.ndarray) -> np.ndarray:
        tau = time_adjustment(schedule, tt[..., None], m, kernel, clip=False)
        return schedule.alpha_bar(tau)

    d = (abar_tau(hi) - abar_tau(lo)) / (hi - lo)[..., None]
    total = d.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = d / total
    # Where any level's log-SNR reaches the clip (SNR = ∞ or 0), ᾱ_{τ_m} is flat there.
    top = np.log(_scale(num_levels - 1, kernel))
    clipped = (schedule.log_snr(lo) + top >= LOG_SNR_LIMIT) | (schedule.log_snr(hi) <= -LOG_SNR_LIMIT)
    bad = clipped[..., None] | ~(np.abs(total) > 1e-300)
    return np.where(bad, np.nan, r)


def peak_times(schedule: Schedule, num_levels: int, kernel: int = 2, n_t: int = 4001) -> np.ndarray:
    """t_frac at which each level's r_m(t) peaks (argmax on a fine grid), shape (M,)."""
    t = np.linspace(0.0, 1.0, n_t)
    r = chromatography(schedule, t, num_levels, kernel)
    return t[np.argmax(r, axis=0)]


THEORY_COLUMNS = [
    "schedule",
    "t",
    "t_frac",
    "m",
    "resolution",
    "alpha_bar",
    "snr",
    "tau_frac",
    "alpha_bar_tau",
    "lambda",
    "r",
]


def theory_table(
    schedule: Schedule, resolution: int = 64, n_t: int = 1000, kernel: int = 2
) -> pd.DataFrame:
    """One row per (t, m): the contract of ``results/theory/{schedule}.parquet`` (docs/DESIGN.md).

    Columns: schedule, t (the schedule's own time), t_frac (0…1, 1 = pure noise), m,
    resolution (side length), alpha_bar, snr, tau_frac (eq. 16, clipped to [0, 1]),
    alpha_bar_tau (eq. 16), lambda (eq. 13), r (eq. 18 via Theorem 1, eq. 34).
    Vectorised over the whole (t, m) grid.
    """
    if n_t < 2:
        raise ValueError(f"n_t must be ≥ 2, got {n_t}")
    M = num_levels(resolution, kernel)
    t = np.linspace(0.0, 1.0, n_t)
    m = np.arange(M)
    a = schedule.alpha_bar(t)
    tt, mm = np.meshgrid(t, m, indexing="ij")
    aa = np.broadcast_to(a[:, None], tt.shape)
    r = chromatography(schedule, t, M, kernel)
    df = pd.DataFrame(
        {
            "schedule": schedule.name,
            "t": np.broadcast_to(schedule.native_t(t)[:, None], tt.shape).ravel(),
            "t_frac": tt.ravel(),
            "m": mm.ravel().astype(np.int32),
            "resolution": np.broadcast_to(level_resolutions(resolution, kernel), tt.shape)
            .ravel()
            .astype(np.int32),
            "alpha_bar": aa.ravel(),
            "snr": np.exp(schedule.log_snr(t))[:, None].repeat(M, 1).ravel(),
            "tau_frac": time_adjustment(schedule, tt, mm, kernel).ravel(),
            "alpha_bar_tau": alpha_bar_tau(aa, mm, kernel).ravel(),
            "lambda": intensity_factor(aa, mm, kernel).ravel(),
            "r": r.ravel(),
        }
    )
    return df[THEORY_COLUMNS]


def write_theory_table(
    name: str, spec: dict, out: str, resolution: int = 64, kernel: int = 2, n_t: int = 1000
) -> None:
    """Build schedule ``name`` from its config ``spec`` and write its theory table (Parquet)."""
    from reschrom.io import write_parquet
    from reschrom.theory.schedules import build_schedule

    write_parquet(theory_table(build_schedule(name, spec), resolution, n_t, kernel), out)
