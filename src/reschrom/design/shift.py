"""Resolution shift of a schedule (a model trained at R used at k·R).

**Resolution shift** (:func:`shift_table`). Using a model trained at R at resolution k·R adds
log₂k finer levels; the content the model saw at its level m (R/2^m pixels) is level
j = m + log₂k at kR, whose SNR is 4^j·SNR'(t) = 4^m k²·SNR'(t). Keeping every old level's window
(the same ᾱ_{τ_m}(t), eq. 16, hence the same r*, eq. 34) therefore needs

    SNR'(t) = SNR(t) / k²,   log SNR'(t) = log SNR(t) − 2 ln k,   ᾱ' = ᾱ / (k² − (k² − 1) ᾱ):

a noisier schedule. It is *exactly* simple diffusion's shifted schedule (log-SNR shifted by
2 ln k; for the cosine schedule without offset −2 ln tan(πt/2) − 2 ln k), and diffusers'
``snr_shift_scale`` s = k² (CogVideoXDDIMScheduler: ᾱ' = ᾱ/(s + (1 − s)ᾱ), i.e. SNR' = SNR/s).
SD3's shift σ' = kσ/(1 + (k − 1)σ) gives (1 − σ')/σ' = (1 − σ)/(kσ), i.e. SNR'_flow = SNR_flow/k²:
applied to the flow-matching σ (the flow-equivalent σ = 1/(1 + √SNR) of any schedule) it is the
same warp again. As SD3/FLUX use it — on the sampling *time* t of the base (σ = t for flow
matching) — it coincides with the derived warp for flow-matching bases (shifts compose:
s₁ then s₂ is s₁s₂), but for VP bases it is a reparametrisation of the base (Theorem 1: it keeps
the end points and the ᾱ range and only moves time), not an SNR shift; it then differs from the
derived warp (by 2 ln k at both end points where these are not clipped; the two curves cross
at isolated t at most). For EDM the derived warp is σ' = kσ. The table reports the maximum
|Δ log SNR| of each pair over the t where none is clipped, and a ``note`` with the crossings.

Neither torch nor diffusers is imported at import time (theory jobs start fast).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reschrom.theory.schedules import (
    LOG_SNR_LIMIT,
    ArrayLike,
    FlowMatchingSchedule,
    ReparametrizedSchedule,
    Schedule,
    build_schedule,
)

# --------------------------------------------------------------------------------------
# resolution shift
# --------------------------------------------------------------------------------------


@dataclass
class SNRShiftedSchedule(Schedule):
    """SNR'(t) = SNR(t)/k²: the warp that keeps every level's window at k times the resolution
    (module docstring, "Resolution shift"); simple diffusion's shift, diffusers' ``snr_shift_scale``
    = k². The base's log-SNR is extended linearly past its ends (SNR⁻¹ of the base)."""

    base: Schedule
    ratio: float = 2.0
    name: str = "shifted"

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        return np.clip(self.base.log_snr(t_frac) - 2 * math.log(self.ratio), -LOG_SNR_LIMIT, LOG_SNR_LIMIT)

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        return self.base.t_frac_from_log_snr(np.asarray(log_snr, dtype=np.float64) + 2 * math.log(self.ratio))

    def native_t(self, t_frac: ArrayLike) -> np.ndarray:
        return self.base.native_t(t_frac)

    def t_frac_from_native(self, t: ArrayLike) -> np.ndarray:
        return self.base.t_frac_from_native(t)


def sd3_time_shift(base: Schedule, ratio: float) -> ReparametrizedSchedule:
    """SD3/FLUX's shift on the base's own time: ᾱ'(t) = ᾱ(kt/(1 + (k−1)t)), k = ``ratio``."""
    k = float(ratio)
    return ReparametrizedSchedule(
        base,
        warp=lambda t: k * t / (1 + (k - 1) * t),
        warp_inverse=lambda u: u / (k - (k - 1) * u),
        name=f"{base.name}_sd3_{k:g}",
    )


def derived_alpha_bar(alpha_bar: ArrayLike, ratio: float) -> np.ndarray:
    """ᾱ' with 4^{m + log₂k} SNR'(t) = 4^m SNR(t): ᾱ' = ᾱ/(k² − (k² − 1)ᾱ), the inverse of the
    level map ᾱ_τ = k²ᾱ/((k² − 1)ᾱ + 1) of eq. 16 with n^{2m} = k²."""
    a = np.asarray(alpha_bar, dtype=np.float64)
    k2 = float(ratio) ** 2
    return a / (k2 - (k2 - 1.0) * a)


def snr_shift_scale_alpha_bar(alpha_bar: ArrayLike, scale: float) -> np.ndarray:
    """diffusers' ``snr_shift_scale`` (CogVideoXDDIMScheduler): ᾱ' = ᾱ/(s + (1 − s)ᾱ)."""
    a = np.asarray(alpha_bar, dtype=np.float64)
    return a / (scale + (1.0 - scale) * a)


def _ls(a: np.ndarray) -> np.ndarray:
    from reschrom.theory.schedules import log_snr_from_alpha_bar

    return log_snr_from_alpha_bar(a)


SHIFT_PAIRS = {
    "derived_simple": ("derived", "simple"),
    "derived_sd3": ("derived", "sd3"),
    "simple_sd3": ("simple", "sd3"),
    "derived_snr_shift_scale": ("derived", "snr_shift_scale"),
}


def shift_table(base: Schedule, ratios: Sequence[float] = (2, 4), n_t: int = 201) -> pd.DataFrame:
    """One row per (ratio k, t_frac) of base ``base``: ᾱ and log SNR of the base, of the derived
    warp (ᾱ' = ᾱ/(k² − (k² − 1)ᾱ)), of simple diffusion's shift (log SNR − 2 ln k), of SD3's shift
    on the base's time (σ-shift s = k) and of diffusers' ``snr_shift_scale`` = k²; per k the max
    |Δ log SNR| of each pair (``max_dlogsnr_<pair>``) over the t where none is clipped, and a
    ``note`` saying where they coincide."""
    t = np.linspace(0.0, 1.0, int(n_t))
    a = base.alpha_bar(t)
    ls_base = base.log_snr(t)
    rows = []
    flow = isinstance(base, FlowMatchingSchedule)
    for k in ratios:
        k = float(k)
        cols = {
            "derived": derived_alpha_bar(a, k),
            "simple": SNRShiftedSchedule(base, k).alpha_bar(t),
            "sd3": sd3_time_shift(base, k).alpha_bar(t),
            "snr_shift_scale": snr_shift_scale_alpha_bar(a, k * k),
        }
        lss = {n: _ls(v) for n, v in cols.items()}
        ok = np.abs(ls_base) < LOG_SNR_LIMIT - 2 * math.log(k) - 1e-9
        for v in lss.values():
            ok &= np.abs(v) < LOG_SNR_LIMIT - 1e-9
        df = pd.DataFrame(
            {
                "schedule": base.name,
                "ratio": k,
                "t_frac": t,
                "alpha_bar_base": a,
                "log_snr_base": ls_base,
                **{f"alpha_bar_{n}": v for n, v in cols.items()},
                **{f"log_snr_{n}": v for n, v in lss.items()},
                "t_base_derived": base.t_frac_from_log_snr(ls_base - 2 * math.log(k)),
                "compared": ok,
            }
        )
        for pair, (x, y) in SHIFT_PAIRS.items():
            d = np.abs(lss[x] - lss[y])[ok]
            df[f"max_dlogsnr_{pair}"] = float(d.max()) if len(d) else math.nan
        d_sd3 = df["max_dlogsnr_derived_sd3"].iloc[0]
        if flow:
            note = (
                f"flow matching: all four coincide (SD3's σ-shift by {k:g} is SNR/{k * k:g}); max |Δ log SNR| "
                f"derived–SD3 {d_sd3:.1e} (rounding)"
            )
        else:
            diff = (lss["derived"] - lss["sd3"])[ok]
            tc = t[ok]
            cross = tc[1:][np.sign(diff[1:]) != np.sign(diff[:-1])]
            where = (
                "they cross (coincide) only at t ≈ " + ", ".join(f"{x:.2f}" for x in cross[:3])
                if len(cross)
                else "they coincide nowhere inside (only where both are clipped)"
            )
            note = (
                f"derived = simple diffusion = snr_shift_scale {k * k:g} (log SNR − {2 * math.log(k):.2f} everywhere); "
                f"SD3's shift on this schedule's own time is a reparametrisation (keeps the end points and the ᾱ "
                f"range), not SNR/{k * k:g}: max |Δ log SNR| {d_sd3:.2f}; {where}"
            )
        df["note"] = note
        rows.append(df)
    return pd.concat(rows, ignore_index=True)


def write_shift_table(specs: Mapping[str, Mapping[str, Any]], ratios: Sequence[float], n_t: int, out: str) -> None:
    """``results/design/shift.parquet``: :func:`shift_table` of every base ``{name: spec}``."""
    from reschrom.io import write_parquet

    dfs = [shift_table(build_schedule(n, s), ratios, n_t) for n, s in specs.items()]
    write_parquet(pd.concat(dfs, ignore_index=True), out)
