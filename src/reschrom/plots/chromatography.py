"""Figures of the measured chromatography (paper Fig. 4 and Fig. 8), from the Parquet tables."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from reschrom.io import read_parquet, save_figure
from reschrom.measure.aggregate import prompt_chromatography
from reschrom.measure.guidance import read_dump as _read_dump
from reschrom.plots.common import LAYOUT, chromatography_heatmap, figure_text


def _norm_strip(ax, chrom, title: str = "") -> None:
    """Relative norms ‖ε_uncond‖, ‖ε_cond‖, ‖g‖ over time, each divided by its maximum."""
    per_t = chrom.groupby("t_frac")[["norm_uncond", "norm_cond", "norm_guidance"]].first().sort_index(ascending=False)
    mat = per_t.to_numpy().T
    mat = mat / np.maximum(np.nanmax(mat, axis=1, keepdims=True), np.finfo(float).tiny)
    t = per_t.index.to_numpy()
    ax.imshow(mat, aspect="auto", cmap="magma", vmin=0, vmax=1, extent=(t[0], t[-1], 2.5, -0.5), interpolation="nearest")
    ax.set_yticks(range(3))
    ax.set_yticklabels(["ε uncond", "ε cond", "CFG g"], fontsize=7)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("t / T   (noise → data)", fontsize=9)
    if title:
        ax.set_title(title, fontsize=9)


def _band_panel(ax, chrom, n_prompts: int) -> None:
    """r̃_m(t) per level (solid) with its 95 % bootstrap band over prompts (shaded, columns
    ``r_measured_lo``/``r_measured_hi``) and the theory r_m(t) (dashed), time T → 0 left to right."""
    colors = plt.get_cmap("viridis")
    levels = sorted(chrom["m"].unique())
    has_band = {"r_measured_lo", "r_measured_hi"} <= set(chrom.columns) and chrom["r_measured_lo"].notna().any()
    for i, m in enumerate(levels):
        d = chrom[chrom["m"] == m].sort_values("t_frac", ascending=False)
        c = colors(i / max(len(levels) - 1, 1))
        res = int(d["resolution"].iloc[0])
        ax.plot(d["t_frac"], d["r_measured"], color=c, lw=1.4, label=f"{res}×{res}")
        ax.plot(d["t_frac"], d["r_theory"], color=c, lw=1.0, ls="--")
        if has_band:
            ax.fill_between(d["t_frac"], d["r_measured_lo"], d["r_measured_hi"], color=c, alpha=0.25, lw=0)
    ax.set_xlim(1, 0)
    ax.set_ylim(0, 1)
    ax.set_xlabel("t / T   (noise → data)", fontsize=9)
    ax.set_ylabel("share", fontsize=9)
    ax.tick_params(labelsize=8)
    band = "95 % bootstrap band over prompts" if has_band else f"no band ({n_prompts} prompt: nothing to resample)"
    ax.set_title(f"measured r̃_m(t) (solid, {band}) and theory r_m(t) (dashed)", fontsize=9)
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)


def plot_measured_chromatography(table: str | os.PathLike, out: str | os.PathLike, model: str = "", dpi: int = 110) -> None:
    """Fig. 4: theory r_m(t) (left) beside the measured r̃_m(t) of CFG (right), rows coarsest … R×R,
    time T → 0 left to right; under each, the relative norms of ε_uncond, ε_cond and g."""
    chrom = read_parquet(table)
    n_p = int(chrom["n_prompts"].max()) if len(chrom) else 0
    fig, axes = plt.subplots(
        3, 2, figsize=(11, 7.6), height_ratios=[4, 1.3, 2.6], squeeze=False, layout=LAYOUT
    )
    im = chromatography_heatmap(axes[0, 0], chrom, "r_theory", "theory r_m(t) (eq. 18)", vmax=1.0)
    chromatography_heatmap(
        axes[0, 1], chrom, "r_measured", f"measured r̃_m(t) of CFG (eq. 19), {n_p} prompt(s)", vmax=1.0
    )
    for ax in axes[0]:
        ax.set_xlabel("")
    fig.colorbar(im, ax=axes[0].tolist(), label="share of level m", fraction=0.025)
    _norm_strip(axes[1, 0], chrom, "relative norm of each noise predictor")
    _norm_strip(axes[1, 1], chrom)
    axes[1, 1].set_yticklabels([])  # the strips share their row labels (left)
    gs = axes[2, 0].get_gridspec()
    for ax in axes[2]:
        ax.remove()
    _band_panel(fig.add_subplot(gs[2, :]), chrom, n_p)
    fig.suptitle(f"resolution chromatography — {model}" if model else "resolution chromatography")
    save_figure(fig, out, dpi)


def plot_prompt_chromatography(
    dumps: Sequence[str | os.PathLike], out: str | os.PathLike, model: str = "", dpi: int = 110, ncols: int = 3
) -> None:
    """Fig. 8: one measured-chromatography heatmap per prompt (mean over that prompt's samples)."""
    n = len(dumps)
    if n == 0:
        raise ValueError("plot_prompt_chromatography: no guidance dumps given")
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols + 0.8, 0.6 + 2.9 * nrows), squeeze=False, layout=LAYOUT
    )
    im = None
    for i, (ax, path) in enumerate(zip(axes.ravel(), dumps)):
        df = _read_dump(path)
        prompt = str(df["prompt"].iloc[0]) if "prompt" in df and len(df) else os.path.basename(str(path))
        per = prompt_chromatography(df)
        im = chromatography_heatmap(ax, per, "r_measured", figure_text(prompt, 44, 86, quote=True), vmax=1.0)
        ax.title.set_fontsize(8)
        if i % ncols:  # row labels once per row, on the left
            ax.set_yticklabels([])
        if i + ncols < n:  # the x label once per column, under its lowest heatmap
            ax.set_xlabel("")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label="r̃_m(t)", fraction=0.02)
    fig.suptitle(f"measured chromatography of CFG per prompt — {model}" if model else "measured chromatography per prompt")
    save_figure(fig, out, dpi)
