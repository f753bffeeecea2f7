"""Figures of prompt composing (paper Fig. 7, 9) and of the coarse-to-fine x̂0 spectra (Fig. 1).

Read from the artifacts only (PNGs, Parquet, safetensors); headless Agg backend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from reschrom.compose import eta_label, load_png  # noqa: E402
from reschrom.io import read_parquet, save_figure  # noqa: E402
from reschrom.plots import chromatography_heatmap  # noqa: E402


def _image_rows(fig, gs_rows, pairs: pd.DataFrame, compose_dir: str, etas: Sequence[float]) -> None:  # noqa: ANN001
    for r, (_, p) in enumerate(pairs.iterrows()):
        for c, eta in enumerate(etas):
            ax = fig.add_subplot(gs_rows[r, c])
            ax.imshow(load_png(os.path.join(compose_dir, p["pair_id"], f"eta_{eta_label(eta)}.png")),
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"η = {eta:g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{p['structure']}\n→ {p['texture']}", fontsize=7)


def plot_compose_grid(
    metrics: str | os.PathLike,
    theory: str | os.PathLike,
    compose_dir: str | os.PathLike,
    etas: Sequence[float],
    out: str | os.PathLike,
    max_pairs: int = 2,
    dpi: int = 110,
) -> None:
    """Fig. 7: the model's theoretical chromatography r_m(t) above the η axis (switch times
    marked), the images of the first ``max_pairs`` pairs at each η, and the measured share of each
    level in the difference from the pure structure image (which resolution follows which prompt)."""
    df = read_parquet(metrics)
    th = read_parquet(theory)
    model = df["model"].iloc[0]
    pairs = df.drop_duplicates("pair_id")[["pair_id", "structure", "texture"]].head(max_pairs)
    etas = sorted((float(e) for e in etas), reverse=True)
    n = len(etas)
    fig = plt.figure(figsize=(1.6 * n + 1.5, 2.2 + 1.6 * len(pairs) + 2.2))
    gs = fig.add_gridspec(3, 1, height_ratios=[1.4, 1.6 * len(pairs), 2.0], hspace=0.35)
    ax = fig.add_subplot(gs[0])
    chromatography_heatmap(ax, th, "r", f"theoretical r_m(t) of {model}'s schedule", vmax=None)
    ax.set_xlim(1.0, 0.0)
    for eta in etas:
        ax.axvline(eta, color="c", lw=1, ls="--")
    ax.set_xlabel("t / T  (structure prompt while t ≥ ηT, texture prompt after)")
    _image_rows(fig, gs[1].subgridspec(len(pairs), n, wspace=0.05, hspace=0.1), pairs, str(compose_dir), etas)
    ax2 = fig.add_subplot(gs[2])
    sub = df[df["eta"].isin(etas)]
    piv = sub.pivot_table(index="resolution", columns="eta", values="share_vs_structure", aggfunc="mean")
    piv = piv.sort_index()[sorted(piv.columns, reverse=True)]
    im = ax2.imshow(piv.to_numpy(), aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    ax2.set_yticks(range(len(piv.index)))
    ax2.set_yticklabels([f"{r}×{r}" for r in piv.index])
    ax2.set_xticks(range(len(piv.columns)))
    ax2.set_xticklabels([f"{e:g}" for e in piv.columns])
    ax2.set_xlabel("η")
    ax2.set_title("share of each level in ‖x_η − x_structure‖² (mean over pairs)", fontsize=9)
    fig.colorbar(im, ax=ax2)
    save_figure(fig, out, dpi)


def plot_compose_pairs(
    metrics: str | os.PathLike,
    compose_dir: str | os.PathLike,
    etas: Sequence[float],
    out: str | os.PathLike,
    dpi: int = 110,
) -> None:
    """Fig. 9: every pair (rows) at every η (columns), same seed across η."""
    df = read_parquet(metrics)
    model = df["model"].iloc[0]
    pairs = df.drop_duplicates("pair_id")[["pair_id", "structure", "texture"]]
    etas = sorted((float(e) for e in etas), reverse=True)
    fig = plt.figure(figsize=(1.6 * len(etas) + 1.5, 1.6 * len(pairs) + 0.6))
    gs = fig.add_gridspec(len(pairs), len(etas), wspace=0.05, hspace=0.1)
    _image_rows(fig, gs, pairs, str(compose_dir), etas)
    fig.suptitle(f"time-dependent prompt composing — {model}", fontsize=10)
    save_figure(fig, out, dpi)


def _to_display(x: np.ndarray) -> np.ndarray:
    """(C, H, W) in about [-1, 1] → (H, W, 3) in [0, 1]."""
    x = np.asarray(x, dtype=np.float64)[:3]
    if x.shape[0] == 1:
        x = np.repeat(x, 3, 0)
    return np.clip(x.transpose(1, 2, 0) / 2 + 0.5, 0, 1)


def plot_x0_spectra(
    table: str | os.PathLike, snapshots: str | os.PathLike, out: str | os.PathLike, dpi: int = 110
) -> None:
    """Fig. 1: x_t and x̂0 snapshots of one trajectory (top), and the mean RAPSD of the x̂0 change
    per step as a frequency × time heatmap (log power, and its distribution over frequencies per
    step with the power-weighted mean frequency, which rises as t → 0: coarse to fine)."""
    from safetensors.torch import load_file

    df = read_parquet(table)
    snap = load_file(str(snapshots))
    model = df["model"].iloc[0]
    n = int(df["n_samples"].iloc[0])
    steps = snap["steps"].numpy()
    ts = snap["timesteps"].numpy()
    S = len(steps)
    fig = plt.figure(figsize=(max(8, 1.4 * S), 8))
    gs = fig.add_gridspec(2, 1, height_ratios=[2.4, 3], hspace=0.3)
    top = gs[0].subgridspec(2, S, wspace=0.05, hspace=0.05)
    for j in range(S):
        for r, key in enumerate(("x_t", "x0")):
            ax = fig.add_subplot(top[r, j])
            ax.imshow(_to_display(snap[key][j].numpy()), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t = {ts[steps[j]]:g}", fontsize=8)
            if j == 0:
                ax.set_ylabel("x_t" if key == "x_t" else "x̂0 = E[x0|x_t]", fontsize=8)
    piv = df.pivot_table(index="k", columns="t_frac", values="power")
    piv = piv[sorted(piv.columns, reverse=True)]  # noise → data, left → right
    P = piv.to_numpy()[1:]  # drop k = 0 (the mean)
    t = np.asarray(piv.columns)
    k = np.asarray(piv.index)[1:]
    bottom = gs[1].subgridspec(1, 2, wspace=0.25)
    extent = (t[0], t[-1], k[0] - 0.5, k[-1] + 0.5)
    ax = fig.add_subplot(bottom[0])
    im = ax.imshow(np.log10(np.maximum(P, 1e-20)), aspect="auto", origin="lower", cmap="magma",
                   extent=extent, interpolation="nearest")
    ax.set(xlabel="t / T  (noise → data)", ylabel="frequency k (cycles / image)",
           title=f"log10 RAPSD of x̂0(t_k) − x̂0(t_k-1), N = {n}")
    fig.colorbar(im, ax=ax)
    ax = fig.add_subplot(bottom[1])
    Pn = P / np.maximum(P.sum(axis=0, keepdims=True), 1e-30)  # spectral distribution per step
    im = ax.imshow(np.log10(np.maximum(Pn, 1e-20)), aspect="auto", origin="lower", cmap="viridis",
                   extent=extent, interpolation="nearest")
    ax.set(xlabel="t / T  (noise → data)", ylabel="frequency k",
           title="log10 share of each frequency per step")
    mean_k = (k[:, None] * Pn).sum(0)
    ax.plot(t, mean_k, "w-", lw=1.2, label="power-weighted mean k")
    ax.legend(fontsize=7, loc="upper left")
    fig.colorbar(im, ax=ax)
    fig.suptitle(f"coarse-to-fine generation — {model}", fontsize=11)
    save_figure(fig, out, dpi)
