"""Figures (seaborn/matplotlib, headless Agg backend), each from the Parquet tables."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from reschrom.io import read_parquet, save_figure  # noqa: E402


def _pivot_r(df: pd.DataFrame, value: str = "r") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix rows = levels coarse→fine top→bottom… , t_frac descending, resolutions)."""
    piv = df.pivot_table(index="resolution", columns="t_frac", values=value, dropna=False)
    piv = piv.sort_index(ascending=True)  # coarsest level (1×1, or c×c e.g. 7×7) first … R×R last
    piv = piv[sorted(piv.columns, reverse=True)]  # T → 0 from left to right
    return piv.to_numpy(), np.asarray(piv.columns), np.asarray(piv.index)


def chromatography_heatmap(ax, df: pd.DataFrame, value: str = "r", title: str = "", vmax=None):  # noqa: ANN001, ANN201
    """Heatmap of r_m(t): rows coarsest … R×R (labelled from the ``resolution`` column, e.g.
    1×1 … 64×64 or 7×7 … 28×28), time T → 0 from left to right (paper Fig. 4)."""
    mat, t, res = _pivot_r(df, value)
    im = ax.imshow(
        mat,
        aspect="auto",
        origin="upper",
        cmap="magma",
        extent=(t[0], t[-1], len(res) - 0.5, -0.5),
        vmin=0,
        vmax=vmax,
        interpolation="nearest",
    )
    ax.set_yticks(range(len(res)))
    ax.set_yticklabels([f"{r}×{r}" for r in res])
    ax.set_xlabel("t / T   (noise → data)")
    ax.set_title(title)
    return im


def plot_chromatography_theory(table: str | os.PathLike, out: str | os.PathLike, dpi: int = 110) -> None:
    """Fig. 4 (left): the theoretical chromatography r_m(t) of one schedule."""
    df = read_parquet(table)
    name = df["schedule"].iloc[0]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    im = chromatography_heatmap(ax, df, "r", f"resolution chromatography r_m(t) — {name}")
    fig.colorbar(im, ax=ax, label="r_m(t)")
    save_figure(fig, out, dpi)


def plot_time_adjustment(table: str | os.PathLike, out: str | os.PathLike, dpi: int = 110) -> None:
    """Fig. 3: τ_m(t) (left) and λ^(m)_t (right) of one schedule, one curve per level."""
    df = read_parquet(table)
    name = df["schedule"].iloc[0]
    df = df.assign(level=df["resolution"].map(lambda r: f"{r}×{r}"))
    order = [f"{r}×{r}" for r in sorted(df["resolution"].unique(), reverse=True)]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    pal = sns.color_palette("viridis", len(order))
    sns.lineplot(df, x="t_frac", y="tau_frac", hue="level", hue_order=order, palette=pal, ax=axes[0])
    axes[0].set(xlabel="t / T", ylabel="τ_m / T", title=f"time adjustment τ_m(t) — {name}")
    sns.lineplot(df, x="t_frac", y="lambda", hue="level", hue_order=order, palette=pal, ax=axes[1], legend=False)
    axes[1].set(xlabel="t / T", ylabel="λ^(m)_t", yscale="log", title="intensity factor λ^(m)_t")
    axes[0].legend(title="level", fontsize=7, ncols=2)
    save_figure(fig, out, dpi)


def plot_chromatography_atlas(tables: list[str], out: str | os.PathLike, dpi: int = 110) -> None:
    """All configured schedules' r_m(t) heatmaps in one figure, with their peak times."""
    dfs = [read_parquet(p) for p in tables]
    n = len(dfs)
    ncols = 2 if n > 1 else 1
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 2.6 * nrows), squeeze=False)
    for ax, df in zip(axes.ravel(), dfs):
        chromatography_heatmap(ax, df, "r", df["schedule"].iloc[0], vmax=1.0)
        # mark each level's peak
        piv = df.pivot_table(index="resolution", columns="t_frac", values="r").sort_index()
        peaks = piv.idxmax(axis=1).to_numpy()
        ax.plot(peaks, range(len(peaks)), "c.", ms=5)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle("resolution chromatography across schedules (cyan: peak of each level)")
    fig.tight_layout()
    save_figure(fig, out, dpi)
