"""Agreement of the measured chromatography with the theory (paper §4.1).

:func:`agreement_table` — per level the peak time of r̃ and of r and their difference, the
Spearman rank correlation of the peak order across levels, and the mean and max Jensen–Shannon
divergence between r̃(·|t) and r(·|t) over t, each with its bootstrap interval.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from reschrom.measure.bootstrap import percentile_interval

# --------------------------------------------------------------------------------------
# agreement with the theory
# --------------------------------------------------------------------------------------


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence (bits, in [0, 1]) between distributions along the last axis."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    mix = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * (np.log2(a) - np.log2(np.where(b > 0, b, 1.0))), 0.0)
        return t.sum(-1)

    return np.clip(0.5 * kl(p, mix) + 0.5 * kl(q, mix), 0.0, 1.0)


AGREEMENT_COLUMNS = [
    "model",
    "m",
    "resolution",
    "peak_t_measured",
    "peak_t_theory",
    "peak_t_diff",
    "spearman_peak_order",
    "jsd_mean",
    "jsd_max",
    "n_t",
]

AGREEMENT_INTERVALS = ["peak_t_measured", "peak_t_diff", "spearman_peak_order", "jsd_mean", "jsd_max"]
"""Agreement metrics with a bootstrap interval: columns ``<metric>_lo``, ``<metric>_hi``."""


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, ties averaged (as Spearman's ρ takes them)."""
    less = (x[..., None, :] < x[..., :, None]).sum(-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(-1)
    return less + (equal + 1) / 2.0


def _agreement_metrics(meas: np.ndarray, theo: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Agreement of K measured tables ``meas`` (K, T, M) (NaN = undefined) with ``theo`` (T, M)
    on the time grid ``t`` (T,): peak times (K, M), Spearman ρ, mean and max JSD, n_t (K,)."""
    K = meas.shape[0]
    ok = ~np.isnan(meas).any(-1)  # (K, T): steps where every level is defined
    any_ok = ok.any(-1)
    idx = np.argmax(np.where(ok[..., None], meas, -np.inf), axis=1)  # first maximum among defined steps
    pm = np.where(any_ok[:, None], t[idx], np.nan)
    pt = t[np.argmax(theo, axis=0)]
    rm, rt = _ranks(pm), _ranks(pt)
    rm = rm - rm.mean(-1, keepdims=True)
    rt = rt - rt.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rm * rt).sum(-1) / np.sqrt((rm**2).sum(-1) * (rt**2).sum())
    const = (np.ptp(pm, axis=-1) == 0) | (np.ptp(pt) == 0) | ~any_ok
    rho = np.where(const, np.nan, rho)
    jsd = np.where(ok, jensen_shannon(np.where(ok[..., None], meas, 1.0), np.broadcast_to(theo, meas.shape)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        jmean, jmax = np.nanmean(jsd, -1), np.nanmax(jsd, -1)
    return {
        "peak_t_measured": pm,
        "peak_t_theory": np.broadcast_to(pt, (K, len(pt))),
        "peak_t_diff": pm - pt,
        "spearman_peak_order": rho,
        "jsd_mean": jmean,
        "jsd_max": jmax,
        "n_t": ok.sum(-1),
    }


def agreement_table(chrom: pd.DataFrame, model: str = "", boot: np.ndarray | None = None) -> pd.DataFrame:
    """Measured vs theoretical chromatography, one row per level m.

    peak_t_measured / peak_t_theory: t_frac at which r̃_m / r_m peak on the model's step grid
    (steps where r̃ is undefined are skipped); peak_t_diff = measured − theory;
    spearman_peak_order: Spearman rank correlation of the two peak times across levels (NaN if
    either is constant); jsd_mean / jsd_max: Jensen–Shannon divergence (bits) between r̃(·|t)
    and r(·|t), mean and max over the steps where r̃ is defined (their number: n_t, of
    n_steps, the last column).

    ``boot`` (n_boot, T, M): bootstrap replicates of r̃ (t_frac ascending, m ascending, as from
    :func:`chromatography_from_stack`); each metric of :data:`AGREEMENT_INTERVALS` then gets
    its 95 % percentile interval ``<metric>_lo``/``<metric>_hi`` (NaN without replicates).
    """
    meas = chrom.pivot_table(index="t_frac", columns="m", values="r_measured", dropna=False).sort_index()
    theo = chrom.pivot_table(index="t_frac", columns="m", values="r_theory").sort_index()
    res = chrom.groupby("m")["resolution"].first()
    meas = meas.reindex(index=theo.index, columns=theo.columns)
    t = theo.index.to_numpy(np.float64)
    th = theo.to_numpy(np.float64)
    est = _agreement_metrics(meas.to_numpy(np.float64)[None], th, t)
    M = th.shape[1]
    out = pd.DataFrame(
        {
            "model": model,
            "m": theo.columns.astype(np.int32),
            "resolution": res.reindex(theo.columns).to_numpy().astype(np.int32),
            "peak_t_measured": est["peak_t_measured"][0],
            "peak_t_theory": est["peak_t_theory"][0],
            "peak_t_diff": est["peak_t_diff"][0],
            "spearman_peak_order": float(est["spearman_peak_order"][0]),
            "jsd_mean": float(est["jsd_mean"][0]),
            "jsd_max": float(est["jsd_max"][0]),
            "n_t": int(est["n_t"][0]),
        }
    )[AGREEMENT_COLUMNS]
    reps = None
    if boot is not None:
        if boot.shape[1:] != th.shape:
            raise ValueError(f"agreement_table: bootstrap replicates of shape {boot.shape[1:]}, table {th.shape}")
        reps = _agreement_metrics(np.asarray(boot, dtype=np.float64), th, t)
    for k in AGREEMENT_INTERVALS:
        e = np.broadcast_to(est[k][0], (M,)) if np.ndim(est[k][0]) == 0 else est[k][0]
        b = None if reps is None else (reps[k][:, None] if reps[k].ndim == 1 else reps[k])
        lo, hi = percentile_interval(None if b is None else np.broadcast_to(b, (b.shape[0], M)), e)
        out[f"{k}_lo"], out[f"{k}_hi"] = lo, hi
    out["n_steps"] = np.int32(len(t))  # n_t of these steps have r̃ defined at every level
    return out
