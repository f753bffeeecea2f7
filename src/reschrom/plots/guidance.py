"""The guidance experiment's Pareto figure (``reschrom.guidance``, docs/guidance.md): caption
accuracy against diversity and against the log-spectral distance to held-out data, one curve per
method and setting (points ordered by scale), 95 % bootstrap intervals over prompts on both
axes. Plain matplotlib (Agg, constrained layout), no torch.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from reschrom.guidance.summary import summarise
from reschrom.io import read_parquet, save_figure
from reschrom.plots.common import LAYOUT

METHOD_STYLE = {
    "cfg": ("black", "o"),
    "interval": ("tab:blue", "s"),
    "fdg": ("tab:green", "^"),
    "apg": ("tab:purple", "v"),
    "bands": ("tab:brown", "P"),
    "chroma": ("tab:red", "D"),
    "chroma_window": ("tab:orange", "X"),
    "chroma_onset": ("tab:pink", "*"),
}


def plot_guidance_design(table: str | os.PathLike, out: str | os.PathLike, n_boot: int = 200, seed: int = 0,
                         dpi: int = 110) -> None:
    """Two panels: accuracy against diversity (up and right is better) and against LSD (up and
    left is better). The y axis is caption accuracy (mean of colour and shape) for the toy
    models, the share of samples in the prompt's concepts for the oracle."""
    df = read_parquet(table)
    s = summarise(df, n_boot=n_boot, seed=seed)
    oracle = df["accuracy_colour"].isna().all()
    ylab = "share of samples in the prompt's concepts" if oracle else "caption accuracy (colour, shape)"
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), layout=LAYOUT)
    for ax, x, xlab in ((axes[0], "diversity", "diversity (1 = held-out data)"),
                        (axes[1], "lsd_db", "log-spectral distance to held-out data (dB)")):
        for (method, setting), g in s.groupby(["method", "setting"], sort=False):
            g = g.sort_values("scale")
            color, marker = METHOD_STYLE.get(method, ("gray", "o"))
            ls = "-" if method.startswith("chroma") else "--"
            label = method if setting == "-" else f"{method} ({setting})"
            xerr = [g[x] - g[f"{x}_lo"], g[f"{x}_hi"] - g[x]]
            yerr = [g["accuracy"] - g["accuracy_lo"], g["accuracy_hi"] - g["accuracy"]]
            ax.errorbar(g[x], g["accuracy"], xerr=xerr, yerr=yerr, color=color, marker=marker, ls=ls, lw=1.2,
                        ms=5, elinewidth=0.6, capsize=0, alpha=0.9, label=label)
            for _, r in g.iterrows():
                ax.annotate(f"{r['scale']:g}", (r[x], r["accuracy"]), fontsize=6, color=color,
                            xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel(xlab)
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    model = str(df["model"].iloc[0]) if len(df) else ""
    nfe = int(df["nfe"].iloc[0]) if len(df) else 0
    fig.suptitle(f"{model}: guidance methods at {nfe} denoiser evaluations per sample (numbers: scale w)", fontsize=10)
    save_figure(fig, out, dpi=dpi)
