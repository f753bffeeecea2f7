"""Per-setting summaries of the guidance experiment with bootstrap intervals over prompts,
and which settings lie on the accuracy–diversity / accuracy–LSD Pareto front.
NumPy and pandas only (the table and figure jobs import it without torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

METRICS = ("accuracy", "accuracy_colour", "accuracy_shape", "accuracy_concept", "diversity",
           "diversity_coarse", "lsd_db", "pixel_std", "clip_fraction")
"""Metric columns of ``results/guidance_design/{model}.parquet`` that :func:`summarise` averages."""


def summarise(df: pd.DataFrame, n_boot: int = 200, seed: int = 0, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Per (model, method, setting, scale): the mean of each metric over prompts and seeds,
    with ``<metric>_lo``/``_hi``, the 95 % bootstrap interval over prompts (the same prompt
    resamples for every setting, so that settings compare paired); NaN with one prompt."""
    rng = np.random.default_rng(int(seed))
    keys = ["model", "method", "setting", "scale"]
    prompts = sorted(df["prompt"].unique())
    P = len(prompts)
    boots = rng.integers(0, P, size=(int(n_boot), P)) if P > 1 and n_boot > 0 else None
    out = []
    for k, g in df.groupby(keys, sort=False):
        row = dict(zip(keys, k))
        per_prompt = g.groupby("prompt")[list(metrics)].mean().reindex(prompts)
        vals = per_prompt.to_numpy(dtype=np.float64)
        for j, mname in enumerate(metrics):
            v = vals[:, j]
            row[mname] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            if boots is not None and np.isfinite(v).any():
                with np.errstate(all="ignore"):
                    bm = np.nanmean(v[boots], axis=1)
                row[f"{mname}_lo"], row[f"{mname}_hi"] = (float(q) for q in np.nanpercentile(bm, [2.5, 97.5]))
            else:
                row[f"{mname}_lo"] = row[f"{mname}_hi"] = float("nan")
        row["n_prompts"] = int(g["prompt"].nunique())
        out.append(row)
    return pd.DataFrame(out)


def pareto_front(summary: pd.DataFrame, x: str, y: str = "accuracy", x_larger_better: bool = True) -> pd.Series:
    """True for the settings no other setting beats on both ``y`` (larger better) and ``x``
    (larger better, or smaller for a distance such as ``lsd_db``), one strictly."""
    sx = summary[x].to_numpy(dtype=float) * (1 if x_larger_better else -1)
    sy = summary[y].to_numpy(dtype=float)
    on = []
    for i in range(len(summary)):
        dom = (sx >= sx[i]) & (sy >= sy[i]) & ((sx > sx[i]) | (sy > sy[i]))
        on.append(not bool(dom.any()))
    return pd.Series(on, index=summary.index)


def paired_difference(
    df: pd.DataFrame, a: tuple, b: tuple, metric: str, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, 2.5 %, 97.5 %) of ``metric`` of setting ``a`` minus setting ``b`` ((method, scale)
    each, or (method, scale, setting) where one method is swept over several settings), paired
    by (prompt, seed): both settings start from the same noise, so the difference is tighter
    than the two settings' own intervals. The interval resamples prompts."""
    keys = ["prompt", "seed"]

    def pick(key: tuple) -> pd.Series:
        g = df[(df["method"] == key[0]) & (df["scale"] == float(key[1]))]
        if len(key) > 2:
            g = g[g["setting"] == key[2]]
        if g.empty:
            raise KeyError(f"no rows of setting {key!r}")
        if "setting" in g and g["setting"].nunique() > 1:
            raise KeyError(f"setting {key!r} is ambiguous: {sorted(g['setting'].unique())}; name one as a third item")
        return g.groupby(keys)[metric].mean()

    d = (pick(a) - pick(b)).dropna().groupby(level="prompt").mean()
    v = d.to_numpy(dtype=np.float64)
    if len(v) < 2 or n_boot <= 0:
        return float(v.mean()) if len(v) else float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(int(seed)).integers(0, len(v), size=(int(n_boot), len(v)))
    lo, hi = np.percentile(v[idx].mean(axis=1), [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)
