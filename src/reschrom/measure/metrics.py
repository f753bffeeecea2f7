"""Sample-quality metrics of generated images against held-out data (paper §4.2, Fig. 6).

All metrics compare a batch of samples x (N, C, R, R) with data y (N', C, R, R), both in the
model range [-1, 1]. Samples arrive *unclamped*: the fraction of pixels with |x| ≥ 1 is
measured first (:func:`clip_fraction`), then x is clamped to [-1, 1] like a saved image.

- RAPSD (``reschrom.theory.spectra.rapsd``) averaged over samples, and its log-spectral distance to
  the data's (dB, RMS over frequencies k ≥ 1);
- band energy ratio per level m: E‖g^(m)‖² of samples over that of data, g^(m) the bands of
  eq. 19 (``reschrom.theory.pyramid.band_energies``): 1 is right, > 1 excess, < 1 missing energy;
- residual noise: the high-frequency excess, E‖g^(0)‖² + E‖g^(1)‖² of samples over that of the
  data, minus 1: the two finest bands, i.e. the residual model's own band (m = 0) and the
  finest band of a half-resolution model (m = 1), where a low-res model that is asked at the
  wrong time leaves its noise (> 0: noise left in the samples; < 0: over-smoothed);
- diversity: mean pairwise RMS distance between distinct samples over that of the data, at full
  resolution (``diversity``, which leftover noise inflates) and of the 4×4 average-pooled images
  (``diversity_coarse``: do the samples' layouts and colours differ as much as the data's, or
  converge to similar outcomes?);
- pixel mean and std (over all samples, channels and pixels) and their data counterparts;
- caption accuracy (:func:`caption_accuracy`, shapes dataset): does a text model draw the colour and
  shape its caption names (the detector of :func:`reschrom.data.shapes.classify_shapes`)?
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from reschrom.theory import pyramid, spectra

CLIP_TOLERANCE = 1e-4
"""|x| ≥ 1 - CLIP_TOLERANCE counts as clipped: thresholded pixels land on ±1 up to rounding."""


def clip_fraction(x: torch.Tensor, tol: float = CLIP_TOLERANCE) -> float:
    """Fraction of values with |x| ≥ 1 (minus ``tol``) before clamping."""
    return float((x.abs() >= 1.0 - tol).float().mean())


def mean_rapsd(x: torch.Tensor) -> torch.Tensor:
    """RAPSD averaged over the batch, shape (R//2 + 1,), float64."""
    return spectra.rapsd(x.double()).mean(0)


def mean_band_energies(x: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    """E‖g^(m)‖² over the batch, per pixel (divided by C·H·W), shape (M,), float64."""
    n_pix = x[0].numel()
    return pyramid.band_energies(x.double(), kernel).mean(0) / n_pix


def mean_pairwise_distance(x: torch.Tensor, max_n: int = 512) -> float:
    """Mean RMS distance √(mean (x_i - x_j)²) over pairs i ≠ j of the first ``max_n`` images."""
    f = x[:max_n].reshape(min(len(x), max_n), -1).double()
    n = len(f)
    if n < 2:
        return float("nan")
    d = torch.cdist(f, f) / f.shape[1] ** 0.5
    return float(d.sum() / (n * (n - 1)))


def sample_metrics(x: torch.Tensor, data: torch.Tensor, kernel: int = 2) -> dict[str, float]:
    """Metrics of one batch of unclamped samples ``x`` against ``data`` (module docstring).

    Keys: n_samples, clip_fraction, lsd_db, residual_noise, diversity, pairwise_distance,
    pixel_mean, pixel_std, energy_ratio_m{m} and band_energy_m{m} (per pixel) for every
    level m = 0 (finest) … M-1 (1×1).
    """
    clipped = clip_fraction(x)
    x = x.float().clamp(-1.0, 1.0)
    data = data.float()
    e_x, e_d = mean_band_energies(x, kernel), mean_band_energies(data, kernel)
    ratio = e_x / e_d.clamp_min(1e-300)
    div_x, div_d = mean_pairwise_distance(x), mean_pairwise_distance(data)
    coarse = max(0, len(e_x) - 3)  # the 4×4 level (or full resolution below 4×4)
    div_c = mean_pairwise_distance(pyramid.downsample(x, coarse, kernel)) / mean_pairwise_distance(
        pyramid.downsample(data, coarse, kernel)
    )
    out: dict[str, float] = {
        "n_samples": len(x),
        "clip_fraction": clipped,
        "lsd_db": float(spectra.log_spectral_distance(mean_rapsd(x), mean_rapsd(data))),
        "residual_noise": float(e_x[:2].sum() / e_d[:2].sum().clamp_min(1e-300) - 1.0),
        "diversity": div_x / div_d,
        "diversity_coarse": div_c,
        "pairwise_distance": div_x,
        "pixel_mean": float(x.mean()),
        "pixel_std": float(x.std()),
    }
    for m in range(len(ratio)):
        out[f"energy_ratio_m{m}"] = float(ratio[m])
    for m in range(len(ratio)):
        out[f"band_energy_m{m}"] = float(e_x[m])
    return out


def data_reference(data: torch.Tensor, kernel: int = 2) -> dict[str, float]:
    """The data's own pixel mean/std and pairwise distance, added to every row for reference."""
    data = data.float()
    return {
        "data_pixel_mean": float(data.mean()),
        "data_pixel_std": float(data.std()),
        "data_pairwise_distance": mean_pairwise_distance(data),
        "n_data": len(data),
    }


def metrics_tables(
    samples: Mapping[str, torch.Tensor], data: torch.Tensor, kernel: int = 2
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics: one row per variant, spectra: one row per (variant, k)) for named sample
    batches; the spectra table holds ``data`` as variant ``"data"``."""
    ref = data_reference(data, kernel)
    rows = [{"variant": v, **sample_metrics(x, data, kernel), **ref} for v, x in samples.items()]
    spec_rows = []
    for v, x in [*samples.items(), ("data", data)]:
        p = mean_rapsd(x.float().clamp(-1, 1))
        spec_rows += [{"variant": v, "k": k, "power": float(p[k])} for k in range(len(p))]
    return pd.DataFrame(rows), pd.DataFrame(spec_rows)


def write_upscale_metrics(
    sample_paths: Mapping[str, str | os.PathLike],
    data_path: str | os.PathLike,
    out_metrics: str | os.PathLike,
    out_spectra: str | os.PathLike,
    kernel: int = 2,
    max_data: int | None = None,
    threads: int | None = None,
) -> None:
    """Read each variant's samples and the held-out data (level 0, uint8 or float), write
    ``metrics.parquet`` (one row per variant) and ``spectra.parquet`` (long RAPSD table)."""
    from reschrom.io import write_parquet

    if threads:
        torch.set_num_threads(int(threads))
    from reschrom.io import read_images

    data = torch.from_numpy(read_images(data_path, limit=max_data))
    samples = {v: torch.from_numpy(read_images(p)) for v, p in sample_paths.items()}
    for v, x in samples.items():
        if x.shape[1:] != data.shape[1:]:
            raise ValueError(f"variant {v}: samples are {tuple(x.shape[1:])}, data {tuple(data.shape[1:])}")
    metrics, spec = metrics_tables(samples, data, kernel)
    write_parquet(metrics, out_metrics)
    write_parquet(spec, out_spectra)


def caption_accuracy(images: torch.Tensor, prompts: Sequence[str]) -> pd.DataFrame:
    """Per prompt: the (colour, shape) the detector sees against the caption's words."""
    from reschrom.data.shapes import caption_factors, classify_shapes

    colours, shapes = classify_shapes(images)
    rows = []
    for p, c, s in zip(prompts, colours, shapes):
        wc, ws = caption_factors(p)
        rows.append({"prompt": p, "colour": wc, "shape": ws, "detected_colour": c, "detected_shape": s,
                     "colour_ok": c == wc, "shape_ok": s == ws})
    return pd.DataFrame(rows)
