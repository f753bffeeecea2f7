"""Loss curves of trained models, from their ``training_log.parquet`` files (no torch import)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from reschrom.io import read_parquet, save_figure
from reschrom.plots.common import LAYOUT, wrap

FLOW_MODEL_FILE, FLOW_CLASS_NAME = "reschrom_model.json", "FlowTextToImage"
"""``reschrom.models.flow.MODEL_FILE`` / ``CLASS_NAME`` (read here without importing torch)."""


def _is_flow_folder(folder: str | os.PathLike) -> bool:
    f = Path(folder) / FLOW_MODEL_FILE
    try:
        return json.loads(f.read_text()).get("class") == FLOW_CLASS_NAME
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def _draw_log(ax, model_dir: str | os.PathLike, title: str) -> None:
    df = read_parquet(Path(model_dir) / "training_log.parquet")
    ax.plot(df["step"], df["loss"], lw=0.5, alpha=0.35, color="tab:blue", label="per step")
    win = max(len(df) // 30, 1)
    ax.plot(df["step"], df["loss"].rolling(win, min_periods=1).mean(), color="tab:blue", lw=1.6,
            label=f"running mean ({win} steps)")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("velocity MSE" if _is_flow_folder(model_dir) else "ε-prediction MSE")
    ips = float(np.median(df["images_per_s"])) if len(df) else float("nan")
    ax.set_title(wrap(f"{title}  ({ips:.0f} images/s)", 56), fontsize=10)
    ax.legend(fontsize=7)


def plot_training_log(model_dir: str | os.PathLike, out: str | os.PathLike, title: str = "", dpi: int = 110) -> None:
    """Loss curve of a trained model (raw per step and a running mean) from its training_log.parquet
    (the ε-prediction MSE, or the velocity MSE of a flow-matching folder)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2), layout=LAYOUT)
    _draw_log(ax, model_dir, title)
    save_figure(fig, out, dpi)


def plot_training_logs(model_dirs: Mapping[str, str | os.PathLike], out: str | os.PathLike, dataset: str = "",
                       dpi: int = 110, ncols: int = 2) -> None:
    """One panel per trained model (:func:`plot_training_log`'s curve), titled by its name: the
    loss curves of every model trained on ``dataset``, drawn by one job."""
    if not model_dirs:
        raise ValueError(f"{out}: no trained models to plot")
    n = len(model_dirs)
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.2 * rows), layout=LAYOUT, squeeze=False)
    for ax, (name, folder) in zip(axes.flat, model_dirs.items()):
        _draw_log(ax, folder, f"{name} — {dataset}" if dataset else name)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    save_figure(fig, out, dpi)
