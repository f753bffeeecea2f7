"""Radially averaged power spectral density (RAPSD) of images.

|FFT|² of each channel, averaged over channels and over rings of integer radius
k = round(√(kx² + ky²)) in cycles per image, for k = 0 … H/2. Used for paper Fig. 1 (the
spectrum of the change of x̂0 between steps) and to compare samples with data (§4.2).
"""

from __future__ import annotations

import torch


def radial_bins(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Integer radius of every FFT frequency of a size×size image, shape (size, size)."""
    f = torch.fft.fftfreq(size, d=1.0 / size, device=device)
    r = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    return torch.round(r).long()


def rapsd(images: torch.Tensor) -> torch.Tensor:
    """RAPSD of a batch (B, C, H, W) → (B, H//2 + 1): mean |FFT|²/(H·W) per integer radius.

    Normalised so that white noise of variance σ² has a flat spectrum equal to σ².
    Computed in float32 (float64 for float64 input) on the input's device.
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square (B, C, H, W) images, got {tuple(images.shape)}")
    x = images.float() if images.dtype not in (torch.float32, torch.float64) else images
    size = x.shape[-1]
    power = torch.fft.fft2(x).abs().pow(2).mean(dim=1) / (size * size)  # (B, H, W)
    bins = radial_bins(size, x.device)
    n_bins = size // 2 + 1
    mask = bins <= size // 2
    idx = bins[mask]
    vals = power[:, mask]  # (B, n)
    sums = torch.zeros(x.shape[0], n_bins, dtype=vals.dtype, device=x.device)
    sums.index_add_(1, idx, vals)
    counts = torch.bincount(idx, minlength=n_bins).to(vals.dtype)
    return sums / counts


def log_spectral_distance(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Root-mean-square difference of 10·log10 spectra over frequencies k ≥ 1 (dB)."""
    d = 10 * (torch.log10(p[..., 1:] + eps) - torch.log10(q[..., 1:] + eps))
    return d.pow(2).mean(dim=-1).sqrt()


def spectral_slope(spectrum: torch.Tensor, k_min: int = 2, k_max: int | None = None) -> torch.Tensor:
    """Least-squares slope of log P(k) against log k over k_min … k_max (e.g. -2 for 1/f²)."""
    n = spectrum.shape[-1]
    k_max = k_max or n - 1
    k = torch.arange(k_min, k_max + 1, dtype=torch.float64, device=spectrum.device)
    lk = torch.log(k)
    lp = torch.log(spectrum[..., k_min : k_max + 1].double())
    lk_c = lk - lk.mean()
    return ((lp - lp.mean(dim=-1, keepdim=True)) * lk_c).sum(-1) / lk_c.pow(2).sum()
