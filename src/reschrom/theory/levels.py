"""The level maths of the paper, each equation once: the forward process, the posterior mean,
the level view of x_t and its time, and the per-level noise targets and their composite.

Notation (docs/DESIGN.md): ᾱ is the cumulative signal level, D average pooling with an n×n
kernel (n = 2), U nearest-neighbour upsampling by n, m = 0 (full resolution) … M−1 (1×1).

- :func:`forward_diffuse` — x_t = √ᾱ x0 + √(1−ᾱ) ε (eq. 1);
- :func:`x0_from_eps` — x̂0 = (x_t − √(1−ᾱ) ε)/√ᾱ (eq. 7), its inverse :func:`eps_from_x0`,
  and :func:`posterior_mean` for ε, v and sample predictions;
- :func:`level_noise` — n^m D^m ε, the unit-variance noise of level m;
- :func:`level_input` — x^(m)_{τ_m} = λ^(m)_t D^m[x_t] (eq. 14–16);
- :func:`level_time` — τ_m = SNR⁻¹(n^{2m} SNR(t)) (eq. 15–16), continuous, on a level
  model's own time axis;
- :func:`residual_target` — ε − U D[ε] (eq. 21);
- :func:`level_target` — n^m (D^m ε − U D^{m+1} ε), or n^m D^m ε at the coarsest level (eq. 23);
- :func:`compose_levels` — ε = Σ_m n^{-m} U^m[ε^(m)] (eq. 24).

The scalar maps ᾱ → λ^(m), ᾱ_{τ_m} and τ_m themselves live in :mod:`reschrom.theory.resolution`; this
module applies them to tensors. Signal levels ``alpha_bar`` are a Python/NumPy scalar, or
per sample: a (B,) tensor or array, broadcast over the other axes of the image batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from reschrom.theory import resolution as theory
from reschrom.theory.pyramid import check_batch, downsample, upsample
from reschrom.theory.schedules import Schedule

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _coef(values: torch.Tensor | np.ndarray | float, like: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars as a tensor that broadcasts against ``like`` (B, C, H, W).

    A scalar stays 0-d; a (B,) vector becomes (B, 1, …, 1). NumPy/Python values are
    evaluated in float64 by the caller and cast here to ``like``'s dtype and device.
    """
    t = torch.as_tensor(values, device=like.device).to(like.dtype)
    return t if t.ndim == 0 else t.reshape(-1, *([1] * (like.ndim - 1)))


def _sqrt_pair(alpha_bar: torch.Tensor | np.ndarray | float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(√ᾱ, √(1−ᾱ)) broadcastable against ``like``: a tensor ᾱ is taken in ``like``'s dtype,
    a Python/NumPy ᾱ in float64 before the cast."""
    if isinstance(alpha_bar, torch.Tensor):
        a = _coef(alpha_bar, like)
        return a.sqrt(), (1.0 - a).sqrt()
    a = np.asarray(alpha_bar, dtype=np.float64)
    return _coef(np.sqrt(a), like), _coef(np.sqrt(1.0 - a), like)


# --------------------------------------------------------------------------------------
# eq. 1 and eq. 7
# --------------------------------------------------------------------------------------


def forward_diffuse(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor | np.ndarray | float) -> torch.Tensor:
    """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε (eq. 1); ``alpha_bar`` is a scalar or one entry per sample."""
    sa, sn = _sqrt_pair(alpha_bar, x0)
    return sa * x0 + sn * noise


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor | np.ndarray | float) -> torch.Tensor:
    """Posterior mean x̂0 = E[x0 | x_t] = (x_t − √(1−ᾱ_t) ε(x_t, t)) / √ᾱ_t (eq. 7)."""
    sa, sn = _sqrt_pair(alpha_bar, x_t)
    return (x_t - sn * eps) / sa


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: torch.Tensor | np.ndarray | float) -> torch.Tensor:
    """ε consistent with x_t and a given x̂0: (x_t − √ᾱ_t x̂0) / √(1−ᾱ_t) (eq. 7 solved for ε)."""
    sa, sn = _sqrt_pair(alpha_bar, x_t)
    return (x_t - sa * x0) / sn


def posterior_mean(
    x_t: torch.Tensor,
    model_output: torch.Tensor,
    alpha_bar: torch.Tensor | np.ndarray | float,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """x̂0 = E[x0 | x_t] from a model output of any diffusers ``prediction_type`` (eq. 7).

    ``epsilon``: eq. 7; ``v_prediction`` (v = √ᾱ ε − √(1−ᾱ) x0): x̂0 = √ᾱ x_t − √(1−ᾱ) v;
    ``sample``: the output is x̂0.
    """
    if prediction_type == "epsilon":
        return x0_from_eps(x_t, model_output, alpha_bar)
    if prediction_type == "v_prediction":
        sa, sn = _sqrt_pair(alpha_bar, x_t)
        return sa * x_t - sn * model_output
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"prediction_type {prediction_type!r} is unknown; allowed: {', '.join(PREDICTION_TYPES)}")


# --------------------------------------------------------------------------------------
# the level view of x_t (eq. 14–16)
# --------------------------------------------------------------------------------------


def level_noise(eps: torch.Tensor, m: int, kernel: int = 2) -> torch.Tensor:
    """n^m D^m[ε]: the noise of level m, white with unit variance when ε is (eq. 14–16)."""
    return float(kernel) ** m * downsample(eps, m, kernel) if m else eps


def level_input(
    x_t: torch.Tensor,
    alpha_bar: torch.Tensor | np.ndarray | float,
    m: int,
    kernel: int = 2,
    intensity_rescaling: bool = True,
) -> torch.Tensor:
    """x^(m)_{τ_m} = λ^(m)_t D^m[x_t] (eq. 14–16): level m of x_t as a unit-variance diffusion
    sample at time τ_m, λ^(m)_t = n^m / √(1 + (n^{2m} − 1) ᾱ_t) (``theory.intensity_factor``).

    Its noise is :func:`level_noise` and its signal level ``theory.alpha_bar_tau``.
    ``intensity_rescaling=False`` is the ablation λ := 1 (eq. 22, Fig. 6).
    """
    if m == 0:
        return x_t
    d = downsample(x_t, m, kernel)
    if not intensity_rescaling:
        return d
    a = alpha_bar.detach().double().cpu().numpy() if isinstance(alpha_bar, torch.Tensor) else alpha_bar
    return _coef(theory.intensity_factor(a, m, kernel), d) * d


def level_time(
    schedule: Schedule,
    level_schedule: Schedule | None,
    t: torch.Tensor,
    m: int,
    kernel: int = 2,
    time_adjustment: bool = True,
) -> torch.Tensor:
    """τ_m = SNR⁻¹(n^{2m} SNR(t)) (eq. 15–16) of native times ``t`` (B,) of ``schedule``, as
    native times (float32, continuous) of the level model's ``level_schedule``.

    τ_m comes from ``theory.time_adjustment`` (clamped to [0, 1]). When the level model has a
    schedule of its own, τ_m is mapped onto its time axis through ᾱ_{τ_m} (clamped to [0, 1]);
    ``level_schedule`` None or ``schedule`` itself keeps the time fraction (a DDPM level model of
    the same table gets fractional steps, which diffusers' sinusoidal time embedding accepts).
    ``time_adjustment=False`` is the ablation τ_m := t (the same time fraction).
    """
    same = level_schedule is None or level_schedule is schedule
    target = schedule if level_schedule is None else level_schedule
    device = t.device if isinstance(t, torch.Tensor) else None
    if same and (m == 0 or not time_adjustment):
        return torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1)
    tn = torch.as_tensor(t).detach().double().cpu().numpy().reshape(-1)
    t_frac = schedule.t_frac_from_native(tn)
    if time_adjustment and m > 0:
        tau_frac = theory.time_adjustment(schedule, t_frac, m, kernel, clip=True)
        if not same:
            tau_frac = np.clip(target.t_frac_from_alpha_bar(schedule.alpha_bar(tau_frac)), 0.0, 1.0)
    else:
        tau_frac = t_frac
    return torch.as_tensor(target.native_t(tau_frac), dtype=torch.float32, device=device)


# --------------------------------------------------------------------------------------
# the per-level targets and their composite (eq. 21, 23, 24)
# --------------------------------------------------------------------------------------


def residual_target(eps: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    """ε − U D[ε] (eq. 21): the noise the residual predictor learns; D of it is zero."""
    return eps - upsample(downsample(eps, 1, kernel), 1, kernel)


def level_target(eps: torch.Tensor, m: int, num_levels: int, kernel: int = 2) -> torch.Tensor:
    """n^m (D^m ε − U D^{m+1} ε) for m < M−1, n^m D^m ε at the coarsest level m = M−1 (eq. 23).

    The result lives at level m's resolution and has unit variance per pixel for white ε;
    level 0 of M ≥ 2 is :func:`residual_target`.
    """
    if not 0 <= m < num_levels:
        raise ValueError(f"level {m} is outside 0 … {num_levels - 1}")
    d = level_noise(eps, m, kernel)
    return residual_target(d, kernel) if m < num_levels - 1 else d


def compose_levels(preds: Sequence[torch.Tensor], kernel: int = 2) -> torch.Tensor:
    """ε(x_t, t) = Σ_m n^{-m} U^m[ε^(m)] (eq. 24): the full-resolution noise of M level
    predictions ``preds[m]`` (at level m's resolution). Exact targets telescope back to ε."""
    out = None
    for m, p in enumerate(preds):
        term = upsample(p, m, kernel) / float(kernel) ** m
        out = term if out is None else out + term
    if out is None:
        raise ValueError("compose_levels needs at least one level")
    return out


def level_x0(
    x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float, m: int, kernel: int = 2
) -> torch.Tensor:
    """x̂0 of level m from the level's own diffusion sample (eq. 7 at τ_m, eq. 14–16).

    x^(m) = λ^(m) D^m x_t is a sample at time τ_m whose unit-variance noise is n^m D^m ε, so
    x̂0^(m) = (x^(m) - √(1-ᾱ_{τ_m}) n^m D^m ε) / √ᾱ_{τ_m}. (It equals D^m of the full x̂0.)
    """
    a_tau = float(theory.alpha_bar_tau(alpha_bar_t, m, kernel))
    x_m = level_input(x_t, float(alpha_bar_t), m, kernel)
    return x0_from_eps(x_m, level_noise(eps, m, kernel), a_tau)


def multires_static_threshold(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: float,
    kernel: int = 2,
    lo: float = -1.0,
    hi: float = 1.0,
) -> torch.Tensor:
    """Multi-resolution static threshold (Algorithm 1, Appendix B), returns a clamped x̂0.

    x̂0 is computed at every level from λ^(m) D^m x_t and n^m D^m ε. Starting from the
    coarsest level (which initialises, clamped), each finer level adds its own residual
    x̂0^(m) - U D x̂0^(m) to the upsampled running estimate and is clamped again. The extracted
    paper text swaps the two branches; this is the order docs/DESIGN.md fixes.
    """
    M = check_batch(x_t, kernel)
    x = None
    for m in range(M - 1, -1, -1):
        x0_m = level_x0(x_t, eps, alpha_bar_t, m, kernel)
        if x is None:
            x = x0_m.clamp(lo, hi)
        else:
            residual = x0_m - upsample(downsample(x0_m, 1, kernel), 1, kernel)
            x = (upsample(x, 1, kernel) + residual).clamp(lo, hi)
    assert x is not None
    return x
