"""The percentile bootstrap over prompts shared by the chromatography and agreement tables.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

CONFIDENCE = 0.95
"""Coverage of every bootstrap interval (percentile bootstrap over prompts)."""


def bootstrap_rng(seed: int, label: str) -> np.random.Generator:
    """The bootstrap's generator: a function of the run's seed and the label (a category) only."""
    key = int.from_bytes(hashlib.sha256(str(label).encode("utf-8")).digest()[:4], "little")
    return np.random.default_rng([int(seed), key])


def bootstrap_means(r: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray | None:
    """Means over prompts of ``n_boot`` resamples (with replacement) of the prompts of ``r``
    (P, …; NaN = undefined, skipped as in the estimate): (n_boot, …). None when there is nothing
    to resample (n_boot 0 or fewer than 2 prompts)."""
    P = r.shape[0]
    if n_boot <= 0 or P < 2:
        return None
    flat = r.reshape(P, -1)
    ok = ~np.isnan(flat)
    w = rng.multinomial(P, np.full(P, 1.0 / P), size=int(n_boot)).astype(np.float64)  # (B, P) counts
    num = w @ np.where(ok, flat, 0.0)
    den = w @ ok.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out.reshape(int(n_boot), *r.shape[1:])


def percentile_interval(boot: np.ndarray | None, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % percentile interval of bootstrap replicates (axis 0), widened where needed so
    that it contains the estimate; NaN where the estimate or every replicate is NaN."""
    est = np.asarray(estimate, dtype=np.float64)
    if boot is None:
        nan = np.full(est.shape, np.nan)
        return nan, nan.copy()
    a = (1.0 - CONFIDENCE) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(np.asarray(boot, dtype=np.float64), [100 * a, 100 * (1 - a)], axis=0)
    bad = np.isnan(est)
    lo = np.where(bad, np.nan, np.fmin(lo, est))
    hi = np.where(bad, np.nan, np.fmax(hi, est))
    return lo, hi
