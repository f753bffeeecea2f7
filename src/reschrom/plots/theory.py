"""Figures of the theory (paper Fig. 3, Fig. 4 left), each from the Parquet tables.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from reschrom.io import read_parquet, save_figure
from reschrom.plots.common import LAYOUT, chromatography_heatmap, level_label


def plot_chromatography_theory(table: str | os.PathLike, out: str | os.PathLike, dpi: int = 110) -> None:
    """Fig. 4 (left): the theoretical chromatography r_m(t) of one schedule."""
    df = read_parquet(table)
    name = df["schedule"].iloc[0]
    fig, ax = plt.subplots(figsize=(7, 3.4), layout=LAYOUT)
    im = chromatography_heatmap(ax, df, "r", f"resolution chromatography r_m(t) — {name}")
    fig.colorbar(im, ax=ax, label="r_m(t)")
    save_figure(fig, out, dpi)


def plot_time_adjustment(table: str | os.PathLike, out: str | os.PathLike, dpi: int = 110) -> None:
    """Fig. 3: τ_m(t) (left) and λ^(m)_t (right) of one schedule, one curve per level."""
    df = read_parquet(table)
    name = df["schedule"].iloc[0]
    levels = sorted(df["resolution"].unique(), reverse=True)  # R×R (m = 0) first
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(levels)))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4), layout=LAYOUT)
    for r, c in zip(levels, colors):
        d = df[df["resolution"] == r].sort_values("t_frac")
        axes[0].plot(d["t_frac"], d["tau_frac"], color=c, lw=1.3, label=level_label(r))
        axes[1].plot(d["t_frac"], d["lambda"], color=c, lw=1.3)
    axes[0].set(xlabel="t / T", ylabel="τ_m / T")
    axes[0].set_title(f"time adjustment τ_m(t) — {name}", fontsize=10)
    axes[1].set(xlabel="t / T", ylabel="λ^(m)_t", yscale="log")
    axes[1].set_title("intensity factor λ^(m)_t", fontsize=10)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.legend(
        title="level", loc="outside right upper", fontsize=8, title_fontsize=8, ncols=1 if len(levels) <= 8 else 2
    )
    save_figure(fig, out, dpi)


def plot_chromatography_atlas(tables: list[str], out: str | os.PathLike, dpi: int = 110) -> None:
    """All configured schedules' r_m(t) heatmaps in one figure, with their peak times."""
    dfs = [read_parquet(p) for p in tables]
    n = len(dfs)
    ncols = 2 if n > 1 else 1
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.6 * ncols + 1.0, 2.3 * nrows + 0.6), squeeze=False, layout=LAYOUT
    )
    im = None
    for i, (ax, df) in enumerate(zip(axes.ravel(), dfs)):
        im = chromatography_heatmap(ax, df, "r", df["schedule"].iloc[0], vmax=1.0)
        if i < n - ncols:  # the x label once per column, under its lowest heatmap
            ax.set_xlabel("")
        # mark each level's peak
        piv = df.pivot_table(index="resolution", columns="t_frac", values="r").sort_index()
        peaks = piv.idxmax(axis=1).to_numpy()
        ax.plot(peaks, range(len(peaks)), "c.", ms=5)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label="r_m(t)", shrink=0.6)
    fig.suptitle("resolution chromatography across schedules (cyan: peak of each level)")
    save_figure(fig, out, dpi)
