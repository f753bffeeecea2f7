"""The pooling pyramid: D, U, resolution bands (eq. 19) and Algorithm 1.

D is average pooling with an n×n kernel (n = 2 by default), U nearest-neighbour upsampling
by n. DU = I while UD ≠ I; U^m D^m is the orthogonal projection onto images constant on
n^m × n^m blocks, so the bands

    g^(m) = U^m D^m g - U^{m+1} D^{m+1} g   (m < M-1),   g^(M-1) = U^{M-1} D^{M-1} g   (eq. 19)

are mutually orthogonal and sum to g, and Σ_m ‖g^(m)‖² = ‖g‖² exactly.

All functions take batched tensors (B, C, H, W) with H = W = R on any device and dtype. Any
side R = c·n^K (c not divisible by n) works: it has M = K + 1 levels of side R/n^m, and the
coarsest band g^(M-1) holds everything at or below c×c (e.g. 28 = 7·2²: levels 28, 14, 7;
a power of n ends at 1×1). U^m D^m stays an orthogonal projection, so the identities hold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reschrom.theory import resolution as theory


def check_batch(x: torch.Tensor, kernel: int) -> int:
    """Validate a (B, C, R, R) batch and return its number of levels M (theory.num_levels)."""
    if x.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h != w:
        raise ValueError(f"expected square images, got {h}×{w}")
    if h < 1:
        raise ValueError(f"expected images of at least 1×1, got {h}×{w}")
    return theory.num_levels(h, kernel)


def _check_pool(x: torch.Tensor, m: int, kernel: int) -> int:
    k = int(kernel) ** int(m)
    h, w = x.shape[-2:]
    if m < 0 or h % k or w % k:
        raise ValueError(f"cannot pool a {h}×{w} image {m} times by {kernel}: its sides must be divisible by {kernel}^{m} = {k}")
    return k


def downsample(x: torch.Tensor, m: int = 1, kernel: int = 2) -> torch.Tensor:
    """D^m: m-fold n×n average pooling (the paper's coarse graining)."""
    if m == 0:
        return x
    k = _check_pool(x, m, kernel)
    return F.avg_pool2d(x, kernel_size=k, stride=k)


def upsample(x: torch.Tensor, m: int = 1, kernel: int = 2) -> torch.Tensor:
    """U^m: nearest-neighbour upsampling by n^m (repeats each pixel on an n^m × n^m block)."""
    if m == 0:
        return x
    if m < 0:
        raise ValueError(f"cannot upsample {m} times: the number of levels must be ≥ 0")
    k = kernel**m
    return x.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)


def project(x: torch.Tensor, m: int, kernel: int = 2) -> torch.Tensor:
    """U^m D^m: orthogonal projection onto images constant on n^m × n^m blocks."""
    return upsample(downsample(x, m, kernel), m, kernel)


def band_decompose(x: torch.Tensor, kernel: int = 2) -> list[torch.Tensor]:
    """The M resolution bands of eq. 19, each at full resolution; they sum to ``x``."""
    M = check_batch(x, kernel)
    coarse = [downsample(x, m, kernel) for m in range(M)]
    bands = []
    for m in range(M):
        c = coarse[m]
        if m < M - 1:
            c = c - upsample(coarse[m + 1], 1, kernel)
        bands.append(upsample(c, m, kernel))
    return bands


def band_reconstruct(bands: list[torch.Tensor]) -> torch.Tensor:
    """Exact inverse of :func:`band_decompose`: the sum of the bands."""
    return torch.stack(bands, 0).sum(0)


def band_energies(x: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    """‖g^(m)‖² per sample (summed over C, H, W), shape (B, M), without full-size bands.

    ‖U^m y‖² = n^{2m} ‖y‖², so ‖g^(m)‖² = n^{2m} ‖D^m g - U D^{m+1} g‖². Summed in
    float32 at least; Σ_m equals ‖g‖² up to rounding (the bands are orthogonal).
    """
    M = check_batch(x, kernel)
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    out = []
    c = xf
    for m in range(M):
        nxt = downsample(c, 1, kernel) if m < M - 1 else None
        d = c - upsample(nxt, 1, kernel) if nxt is not None else c
        out.append(d.pow(2).sum(dim=(1, 2, 3)) * float(kernel) ** (2 * m))
        c = nxt
    return torch.stack(out, dim=1)


def relative_band_energies(x: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    """r̃_m = ‖g^(m)‖² / Σ_n ‖g^(n)‖² (eq. 19), shape (B, M); rows sum to 1."""
    e = band_energies(x, kernel)
    return e / e.sum(dim=1, keepdim=True).clamp_min(torch.finfo(e.dtype).tiny)


def coarse_to_fine_clamp(x0: torch.Tensor, kernel: int = 2, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """Algorithm 1 applied to a given x̂0 (its level-m views are D^m x̂0)."""
    M = check_batch(x0, kernel)
    x = downsample(x0, M - 1, kernel).clamp(lo, hi)
    for m in range(M - 2, -1, -1):
        x0_m = downsample(x0, m, kernel)
        residual = x0_m - upsample(downsample(x0_m, 1, kernel), 1, kernel)
        x = (upsample(x, 1, kernel) + residual).clamp(lo, hi)
    return x
