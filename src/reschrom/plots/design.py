"""Figures of the schedule design (``reschrom.design``; Theorem 1, eq. 18, 34–35), each from its
Parquet table: r_m(t) of the base and of the designed schedule side by side with every level's
window before and after; the resolution shift against simple diffusion's and SD3's; the NFE
experiment. Plain matplotlib (Agg, constrained layout), no torch.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from reschrom.io import read_parquet, save_figure
from reschrom.plots.common import LAYOUT, chromatography_heatmap, level_label


def plot_design(table: str | os.PathLike, shares: str | os.PathLike, out: str | os.PathLike, dpi: int = 110) -> None:
    """Top: r_m(t) heatmaps of the base and of the designed schedule (same colour scale).
    Bottom left: each level's window — where 10 %…90 % of ∫ r_m dt lies (bars) and where it is the
    largest r (thin lines) — before (grey) and after (colour). Bottom right: the shares."""
    df = read_parquet(table)
    sh = read_parquet(shares).sort_values("m")
    base, name = df["base"].iloc[0], df["schedule"].iloc[0]
    vmax = float(max(df["r"].max(), df["r_base"].max()))
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.4), layout=LAYOUT)
    chromatography_heatmap(axes[0, 0], df, "r_base", f"base: {base}", vmax=vmax)
    im = chromatography_heatmap(axes[0, 1], df, "r", f"designed ({sh['method'].iloc[0]})", vmax=vmax)
    fig.colorbar(im, ax=axes[0, :], label="r_m(t)", shrink=0.9)

    ax = axes[1, 0]
    levels = sh.sort_values("resolution")  # coarsest first (top), as in the heatmaps
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(levels)))
    for i, ((_, row), c) in enumerate(zip(levels.iterrows(), colors)):
        y = len(levels) - 1 - i
        ax.plot([row["window_lo_base"], row["window_hi_base"]], [y + 0.17] * 2, color="0.6", lw=5, solid_capstyle="butt")
        ax.plot([row["window_lo_designed"], row["window_hi_designed"]], [y - 0.17] * 2, color=c, lw=5,
                solid_capstyle="butt")
        if np.isfinite(row["max_lo_base"]):
            ax.plot([row["max_lo_base"], row["max_hi_base"]], [y + 0.36] * 2, color="0.6", lw=1)
        if np.isfinite(row["max_lo_designed"]):
            ax.plot([row["max_lo_designed"], row["max_hi_designed"]], [y - 0.36] * 2, color=c, lw=1)
    ax.set_yticks(range(len(levels)))
    ax.set_yticklabels([level_label(r) for r in levels["resolution"][::-1]], fontsize=8)
    ax.set_xlim(1.0, 0.0)  # T → 0 from left to right, as the heatmaps
    ax.set_xlabel("t / T   (noise → data)", fontsize=9)
    ax.set_title("windows: 10–90 % of ∫r_m dt (thick), r_m largest (thin); grey = base", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)

    ax = axes[1, 1]
    x = np.arange(len(sh))
    w = 0.27
    ax.bar(x - w, sh["share_base"], w, color="0.6", label="base")
    ax.bar(x, sh["share_target"], w, color="tab:orange", label="target")
    ax.bar(x + w, sh["share_designed"], w, color="tab:blue", label="designed")
    ax.set_xticks(x)
    ax.set_xticklabels([level_label(r) for r in sh["resolution"]], fontsize=8, rotation=30)
    ax.set_ylabel("share S_m = ∫ r_m dt", fontsize=9)
    ax.set_title(f"shares (max |designed − target| = {sh['residual'].iloc[0]:.1e})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"schedule designed from a target chromatography — {name}", fontsize=11)
    save_figure(fig, out, dpi)


def plot_shift(table: str | os.PathLike, out: str | os.PathLike, dpi: int = 110) -> None:
    """log SNR(t) of each base, of the derived resolution shift (= simple diffusion's =
    snr_shift_scale k²) and of SD3's shift on the base's time, one panel per base."""
    df = read_parquet(table)
    names = list(dict.fromkeys(df["schedule"]))
    ratios = sorted(df["ratio"].unique())
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 1.5, 3.4), layout=LAYOUT, squeeze=False)
    colors = plt.get_cmap("tab10")(np.arange(len(ratios)) + 1)
    for ax, n in zip(axes[0], names):
        d = df[df["schedule"] == n]
        first = d[d["ratio"] == ratios[0]]
        ax.plot(first["t_frac"], first["log_snr_base"], color="k", lw=1.4, label="base")
        for k, c in zip(ratios, colors):
            g = d[d["ratio"] == k]
            ax.plot(g["t_frac"], g["log_snr_derived"], color=c, lw=1.4, label=f"SNR/k², k={k:g} (simple diff.)")
            ax.plot(g["t_frac"], g["log_snr_sd3"], color=c, lw=1.2, ls="--", label=f"SD3 shift k={k:g}")
        ax.set_ylim(-15, 15)
        ax.set(xlabel="t / T")
        ax.set_title(n, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("log SNR(t)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.suptitle("resolution shift: keep every level's window at k·R (SNR' = SNR/k²)", fontsize=11)
    save_figure(fig, out, dpi)


NFE_METRICS = {
    "lsd_db": "RAPSD log-spectral distance (dB) ↓",
    "band_error": "band energy error (dB) ↓",
    "diversity": "diversity (1 = data)",
    "accuracy_colour": "caption colour accuracy ↑",
    "accuracy_shape": "caption shape accuracy ↑",
}


def plot_nfe(table: str | os.PathLike, out: str | os.PathLike, dpi: int = 110) -> None:
    """Each metric of the NFE experiment against NFE, one line per spacing (mean over seeds)."""
    df = read_parquet(table)
    metrics = [m for m in NFE_METRICS if m in df.columns and df[m].notna().any()]
    mean = df.groupby(["spacing", "nfe"], as_index=False)[metrics].mean()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics) + 1.4, 3.2), layout=LAYOUT, squeeze=False)
    spacings = list(dict.fromkeys(df["spacing"]))
    styles = {"balanced": dict(color="tab:red", lw=2.0, marker="o")}
    for ax, m in zip(axes[0], metrics):
        for sp in spacings:
            g = mean[mean["spacing"] == sp].sort_values("nfe")
            ax.plot(g["nfe"], g[m], label=sp, **styles.get(sp, dict(lw=1.3, marker=".")))
        ax.set_xscale("log", base=2)
        nfes = sorted(mean["nfe"].unique())
        ax.set_xticks(nfes)
        ax.set_xticklabels([str(int(n)) for n in nfes], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("NFE")
        ax.set_title(NFE_METRICS[m], fontsize=9)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title="spacing", loc="outside right upper", fontsize=8, title_fontsize=8)
    fig.suptitle(f"DDIM step spacings against NFE — {df['model'].iloc[0]}", fontsize=11)
    save_figure(fig, out, dpi)
