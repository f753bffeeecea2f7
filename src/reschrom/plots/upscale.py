"""Figures of cascaded upscaling (paper Fig. 5–6): the sample grid and the RAPSD comparison.

Reads the artifacts only (safetensors samples through ``safetensors.numpy``, Parquet tables):
no torch, so a plotting job starts in about a second.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

from reschrom.io import image_grid, read_images, read_parquet, save_figure
from reschrom.plots.common import LAYOUT

ROW_LABELS = {
    "nearest": "low-res samples\n(nearest ×2)",
    "bicubic": "low-res samples\n(bicubic ×2)",
    "no_time_adjustment": "no time\nadjustment (τ:=t)",
    "no_intensity_rescaling": "no intensity\nrescaling (λ:=1)",
    "neither": "neither τ nor λ",
    "full": "full (τ and λ)",
    "multilevel": "M-level (eq. 24)",
    "data": "held-out data",
}
"""The row label of each upscaling variant (Fig. 6)."""


def plot_upscale_grid(
    sample_paths: Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    columns: int = 8,
    dpi: int = 110,
    title: str = "",
) -> None:
    """Paper Fig. 6 layout: one row per variant (in the order given: low-res samples, the τ
    ablation, the λ ablation, the full method), one column per seed — the same initial noise
    down each column."""
    rows = list(sample_paths)
    imgs = {v: read_images(p, limit=columns) for v, p in sample_paths.items()}
    n = min(columns, *(len(x) for x in imgs.values()))
    h = next(iter(imgs.values())).shape[-1]
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(1.0 * n + 2.0, 1.05 * len(rows) + 0.5), squeeze=False, layout=LAYOUT
    )
    for ax, v in zip(axes[:, 0], rows):
        g = image_grid(imgs[v][:n], n, pad=max(1, h // 16))
        ax.imshow(g.squeeze(-1) if g.shape[-1] == 1 else g, cmap="gray", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(ROW_LABELS.get(v, v), rotation=0, ha="right", va="center", fontsize=8, labelpad=6)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.suptitle(title or f"cascaded upscaling ×2, {h}×{h} (columns share a seed)", fontsize=9)
    save_figure(fig, out, dpi)


def plot_upscale_spectra(
    spectra: str | os.PathLike, metrics_table: str | os.PathLike, out: str | os.PathLike, dpi: int = 110
) -> None:
    """RAPSD of each variant against the data (left) and its ratio to the data's (right),
    with each variant's log-spectral distance in the legend."""
    df = read_parquet(spectra)
    lsd = read_parquet(metrics_table).set_index("variant")["lsd_db"].to_dict()
    df = df[df["k"] >= 1]
    ref = df[df["variant"] == "data"].set_index("k")["power"]
    df = df.assign(ratio=df["power"].to_numpy() / ref.reindex(df["k"]).to_numpy())
    variants = [v for v in dict.fromkeys(df["variant"]) if v != "data"]
    colors = dict(zip(variants, plt.get_cmap("tab10")(np.arange(len(variants)) % 10)))
    colors["data"] = (0, 0, 0, 1)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8), layout=LAYOUT)
    # drawn in order, the M-level composite dashed on top: with exact parts it overlays `full`
    for v in [*variants, "data"]:
        d = df[df["variant"] == v].sort_values("k")
        label = f"{v} ({lsd[v]:.2f} dB)" if v in lsd else v
        ls = "--" if v == "multilevel" else "-"
        lw = 2.0 if v == "data" else 1.3
        axes[0].plot(d["k"], d["power"], ls, color=colors[v], lw=lw, label=label)
        if v != "data":
            axes[1].plot(d["k"], d["ratio"], ls, color=colors[v], lw=lw)
    axes[0].set(xscale="log", yscale="log", xlabel="frequency k (cycles / image)", ylabel="RAPSD")
    axes[0].set_title("radially averaged power spectrum", fontsize=10)
    axes[1].axhline(1.0, color="k", ls=":", lw=1)
    axes[1].set(xscale="log", yscale="log", xlabel="frequency k (cycles / image)", ylabel="RAPSD / RAPSD(data)")
    axes[1].set_title("ratio to the data (1 = matches)", fontsize=10)
    kmax = int(df["k"].max()) if len(df) else 1
    kticks = [2**i for i in range(int(np.log2(max(kmax, 1))) + 1)]  # 1, 2, 4, … cycles / image
    for ax in axes:
        ax.grid(True, which="both", alpha=0.25)
        ax.set_xticks(kticks, [str(k) for k in kticks])
        ax.xaxis.set_minor_formatter(NullFormatter())  # log-axis minor labels (3×10⁰ …) collide
    fig.legend(
        title="variant (log-spectral distance)", loc="outside right upper", fontsize=7, title_fontsize=7
    )
    save_figure(fig, out, dpi)
