"""Figure of the measured chromatography per prompt category (paper §4.1, Fig. 4 and 8 by category).

Reads ``results/chromatography/{model}_categories.parquet`` (:func:`reschrom.measure.aggregate.category_table`)
and draws one row of heatmaps per category: the measured r̃_m(t) of CFG (eq. 19, mean over the
category's prompts), its difference from the theory r_m(t) (eq. 18) and the width of its 95 %
bootstrap interval over prompts. Plain matplotlib on the Agg backend in constrained layout, like
every figure module; imports neither torch nor diffusers.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reschrom.io import read_parquet, save_figure
from reschrom.plots.common import LAYOUT, figure_text, level_label


def _matrix(df: pd.DataFrame, value: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values: rows coarsest level … R×R, columns T → 0; t_frac descending; resolutions)."""
    piv = df.pivot_table(index="resolution", columns="t_frac", values=value, dropna=False).sort_index()
    piv = piv[sorted(piv.columns, reverse=True)]
    return piv.to_numpy(np.float64), np.asarray(piv.columns, dtype=np.float64), np.asarray(piv.index)


def _heatmap(ax, mat: np.ndarray, t: np.ndarray, res: np.ndarray, cmap: str, vmin: float, vmax: float, title: str):
    im = ax.imshow(
        np.ma.masked_invalid(mat),
        aspect="auto",
        origin="upper",
        cmap=cmap,
        extent=(t[0], t[-1], len(res) - 0.5, -0.5),
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    step = max(1, int(np.ceil(len(res) / 8)))
    rows = list(range(len(res)))[::-1][::step][::-1]
    ax.set_yticks(rows)
    ax.set_yticklabels([level_label(res[i]) for i in rows], fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(title, fontsize=8)
    return im


def plot_category_chromatography(
    table: str | os.PathLike, out: str | os.PathLike, model: str = "", dpi: int = 110
) -> None:
    """One row per category (in the table's order): measured r̃_m(t), r̃ − r (theory, eq. 18)
    and the 95 % bootstrap interval width r̃_hi − r̃_lo; rows coarsest … R×R, time T → 0."""
    df = read_parquet(table)
    cats = list(dict.fromkeys(df["category"]))
    if not cats:
        raise ValueError(f"plot_category_chromatography: {table} has no category")
    n = len(cats)
    fig, axes = plt.subplots(n, 3, figsize=(12.5, 0.9 + 2.0 * n), squeeze=False, layout=LAYOUT)
    diff_lim = 0.0
    mats = []
    for c in cats:
        d = df[df["category"] == c]
        meas, t, res = _matrix(d, "r_measured")
        theo, _, _ = _matrix(d, "r_theory")
        if {"r_measured_lo", "r_measured_hi"} <= set(d.columns):
            lo, _, _ = _matrix(d, "r_measured_lo")
            hi, _, _ = _matrix(d, "r_measured_hi")
            width = hi - lo
        else:
            width = np.full_like(meas, np.nan)
        diff = meas - theo
        if np.isfinite(diff).any():
            diff_lim = max(diff_lim, float(np.nanmax(np.abs(diff))))
        mats.append((c, int(d["n_prompts"].max()), meas, diff, width, t, res))
    diff_lim = diff_lim or 1.0
    wmax = max([float(np.nanmax(w)) for *_, w, _, _ in mats if np.isfinite(w).any()] + [1e-3])
    ims = [None, None, None]
    for i, (c, n_p, meas, diff, width, t, res) in enumerate(mats):
        row = axes[i]
        label = figure_text(c, 60, 80, suffix=f" ({n_p} prompt{'s' if n_p != 1 else ''})")
        ims[0] = _heatmap(row[0], meas, t, res, "magma", 0.0, 1.0, f"{label}: measured r̃_m(t)")
        ims[1] = _heatmap(row[1], diff, t, res, "RdBu_r", -diff_lim, diff_lim, "r̃ − r (theory, eq. 18)")
        ims[2] = _heatmap(row[2], width, t, res, "viridis", 0.0, wmax, "95 % interval width over prompts")
        for ax in row[1:]:
            ax.set_yticklabels([])
        if i == n - 1:
            for ax in row:
                ax.set_xlabel("t / T   (noise → data)", fontsize=8)
    for j, (im, lab) in enumerate(zip(ims, ["r̃_m(t)", "r̃ − r", "hi − lo"])):
        fig.colorbar(im, ax=axes[:, j].tolist(), label=lab, fraction=0.05, shrink=min(1.0, 0.4 + 0.15 * n))
    fig.suptitle(
        f"measured chromatography by prompt category — {model}" if model else "measured chromatography by prompt category"
    )
    save_figure(fig, out, dpi)
