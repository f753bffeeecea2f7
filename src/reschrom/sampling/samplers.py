"""Sampling: DDIM (eq. 4) and DDPM ancestral loops over any noise predictor, and the
composite predictors of the cascaded upscaling (eq. 22) and its M-level form (eq. 24).

A *noise predictor* is any callable ``eps(x_t, t) -> ε̂`` where ``x_t`` is a (B, C, H, W)
tensor and ``t`` a float tensor of shape (B,) holding the model's own (native) timestep —
a DDPM step index 0 … T-1, possibly fractional. The loop itself is diffusers' scheduler
``step``; this module only adds the optional x̂0 thresholding (static or multi-resolution,
Algorithm 1) and the predictors.

Continuous timesteps: the adjusted time τ_m of a coarse level (eq. 15–16) is rarely an integer
step. diffusers' ``UNet2DModel`` embeds its timestep with a sinusoidal (or Fourier) projection
that accepts any real value, so :func:`unet_predictor` passes τ as a *float tensor* (a Python
float would be cast to ``long`` by the UNet and truncated). Only a UNet with
``time_embedding_type="learned"`` (an embedding table) needs integers; it gets τ rounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from reschrom.theory.levels import (
    compose_levels,
    eps_from_x0,
    level_input,
    level_time,
    multires_static_threshold,
    x0_from_eps,
)
from reschrom.theory.schedules import DiscreteSchedule, Schedule

NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""eps(x_t, t) -> ε̂ with t a float tensor (B,) of native timesteps."""

THRESHOLDS = ("none", "static", "multires")
SAMPLERS = ("ddim", "ddpm")


# --------------------------------------------------------------------------------------
# predictors from models
# --------------------------------------------------------------------------------------


def unet_predictor(unet: Any) -> NoisePredictor:
    """Wrap a diffusers ``UNet2DModel`` as a noise predictor evaluated at continuous time.

    ``t`` is passed to the UNet as a float tensor, so fractional τ (eq. 16) is honoured by the
    sinusoidal time embedding; a learned (table) embedding gets ``t`` rounded to the nearest step.
    Runs under ``torch.no_grad`` in the UNet's dtype; returns ε̂ in the input's dtype.
    """
    learned = getattr(unet.config, "time_embedding_type", "positional") == "learned"
    dtype = next(unet.parameters()).dtype

    @torch.no_grad()
    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1)
        if tt.numel() == 1:
            tt = tt.expand(x.shape[0])
        if learned:
            tt = tt.round().long().clamp(0, unet.config.num_train_timesteps - 1)
        return unet(x.to(dtype), tt).sample.to(x.dtype)

    return eps


def schedule_of(scheduler_or_config: Any, name: str = "model") -> DiscreteSchedule:
    """The model's ᾱ table as a :class:`DiscreteSchedule` (continuous in the step index)."""
    sched = scheduler_or_config
    if not hasattr(sched, "alphas_cumprod"):
        sched = make_scheduler("ddpm", sched)
    return DiscreteSchedule(np.asarray(sched.alphas_cumprod, dtype=np.float64), name=name)


def _alpha_bar(schedule: Schedule, t: torch.Tensor) -> np.ndarray:
    """ᾱ at native times ``t`` (B,) as float64 NumPy."""
    tn = t.detach().double().cpu().numpy().reshape(-1)
    return schedule.alpha_bar(schedule.t_frac_from_native(tn))


# --------------------------------------------------------------------------------------
# composite predictors (eq. 22, 24)
# --------------------------------------------------------------------------------------


def multilevel_predictor(
    predictors: Sequence[NoisePredictor],
    schedule: Schedule,
    level_schedules: Sequence[Schedule] | None = None,
    kernel: int = 2,
    time_adjustment: bool = True,
    intensity_rescaling: bool = True,
) -> NoisePredictor:
    """The M-level composite ε(x_t, t) = Σ_m n^{-m} U^m[ε^(m)(x^(m)_{τ_m}, τ_m)] (eq. 24).

    ``predictors[m]`` is ε^(m): it sees the level-m view x^(m)_{τ_m} = λ^(m)_t D^m[x_t]
    (eq. 14–16, ``levels.level_input``) at its adjusted time τ_m (``levels.level_time``) and
    predicts that level's unit-variance residual noise n^m(D^m ε - U D^{m+1} ε) (eq. 23), or
    n^m D^m ε at the coarsest level. Perfect predictors make the sum telescope back to ε.
    ``schedule`` is the full-resolution process's schedule (native time ``t``);
    ``level_schedules[m]`` that of model m (default: the same). Ablations: ``time_adjustment``
    off asks every model at τ_m := t; ``intensity_rescaling`` off uses λ^(m) := 1.
    """
    M = len(predictors)
    level_schedules = list(level_schedules) if level_schedules is not None else [schedule] * M
    if len(level_schedules) != M:
        raise ValueError(f"{M} predictors but {len(level_schedules)} level schedules")

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        a = _alpha_bar(schedule, t)
        preds = [
            pred(
                level_input(x, a, m, kernel, intensity_rescaling),
                level_time(schedule, level_schedules[m], t, m, kernel, time_adjustment),
            )
            for m, pred in enumerate(predictors)
        ]
        return compose_levels(preds, kernel)

    return eps


def cascade_predictor(
    eps_low: NoisePredictor,
    eps_res: NoisePredictor,
    schedule: Schedule,
    low_schedule: Schedule | None = None,
    kernel: int = 2,
    time_adjustment: bool = True,
    intensity_rescaling: bool = True,
) -> NoisePredictor:
    """ε_high(x_t, t) = ½ U[ε_low(λ_t D[x_t], τ_1)] + ε_res(x_t, t) (eq. 22, paper Fig. 5).

    ε_low is a plain DDPM on D[x0] (eq. 20), evaluated at the continuous adjusted time τ_1
    (eq. 16, mapped onto its own schedule) on the rescaled input λ_t D[x_t] (eq. 13), whose noise
    is the unit-variance 2D[ε]; the ½ (1/n) brings it back to D[ε]. ε_res (eq. 21) predicts the
    residual ε - UD[ε] at full resolution and time t. This is :func:`multilevel_predictor` with
    M = 2 (ε^(0) = ε_res, ε^(1) = ε_low). Ablations: τ_1 := t, λ := 1.
    """
    return multilevel_predictor(
        [eps_res, eps_low],
        schedule,
        [schedule, low_schedule or schedule],
        kernel,
        time_adjustment,
        intensity_rescaling,
    )


# --------------------------------------------------------------------------------------
# schedulers and the loop
# --------------------------------------------------------------------------------------


def make_scheduler(sampler: str, config: Any) -> Any:
    """A diffusers ``DDIMScheduler`` (eq. 4) or ``DDPMScheduler`` from a model's scheduler config.

    The scheduler's own clipping and thresholding are switched off: :func:`sample` thresholds x̂0
    itself (static or Algorithm 1) and feeds the scheduler a consistent ε. ε-prediction only.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r} is unknown; allowed: {', '.join(SAMPLERS)}")
    cfg = dict(config)
    if cfg.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"only epsilon-prediction models are supported, got {cfg['prediction_type']!r}")
    cls = DDIMScheduler if sampler == "ddim" else DDPMScheduler
    return cls.from_config(cfg, clip_sample=False, thresholding=False)


def threshold_eps(
    x: torch.Tensor, eps: torch.Tensor, alpha_bar: float, mode: str, kernel: int = 2
) -> torch.Tensor:
    """ε recomputed from a thresholded x̂0: ``static`` clamps x̂0 to [-1, 1] (Saharia et al. 2022),
    ``multires`` applies Algorithm 1 (:func:`reschrom.theory.levels.multires_static_threshold`),
    ``none`` returns ε unchanged. At ᾱ_t = 1 there is no noise to recompute and at ᾱ_t = 0
    (zero terminal SNR) no x̂0 to threshold; ε is returned unchanged at both ends."""
    if mode == "none":
        return eps
    if mode not in THRESHOLDS:
        raise ValueError(f"threshold {mode!r} is unknown; allowed: {', '.join(THRESHOLDS)}")
    if alpha_bar >= 1.0 or alpha_bar <= 0.0:
        return eps
    if mode == "static":
        x0 = x0_from_eps(x, eps, alpha_bar).clamp(-1.0, 1.0)
    else:
        x0 = multires_static_threshold(x, eps, alpha_bar, kernel)
    return eps_from_x0(x, x0, alpha_bar)


def initial_noise(
    shape: Sequence[int], seed: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """x_T ~ N(0, I) drawn on the CPU from ``torch.Generator().manual_seed(seed)``, then moved:
    the same seed gives the same noise on every device."""
    g = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32).to(device=device, dtype=dtype)


def sample(
    eps_fn: NoisePredictor,
    scheduler: Any,
    x_T: torch.Tensor,
    num_inference_steps: int,
    generator: torch.Generator | None = None,
    threshold: str = "none",
    eta: float = 0.0,
    kernel: int = 2,
    progress: bool = True,
    desc: str = "sampling",
) -> torch.Tensor:
    """Run the reverse process from ``x_T`` with diffusers' ``scheduler.step``.

    DDIMScheduler with ``eta = 0`` is eq. 4: x_{t-1} = √(ᾱ_{t-1}/ᾱ_t) x_t +
    (√(1-ᾱ_{t-1}) - √(ᾱ_{t-1}/ᾱ_t) √(1-ᾱ_t)) ε(x_t, t); DDPMScheduler is ancestral sampling
    (its per-step noise, and DDIM's for eta > 0, comes from ``generator``). With ``threshold``
    ``static`` or ``multires`` the predicted x̂0 (eq. 7) is thresholded and ε recomputed from it
    before the step (:func:`threshold_eps`). The predictor gets the timestep as a float tensor
    (B,). Returns the final sample, not clamped.
    """
    scheduler.set_timesteps(num_inference_steps, device=x_T.device)
    x = x_T * float(getattr(scheduler, "init_noise_sigma", 1.0))
    ac = scheduler.alphas_cumprod
    extra: dict[str, Any] = {"generator": generator}
    if type(scheduler).__name__ == "DDIMScheduler":
        extra["eta"] = eta
    for t in tqdm(scheduler.timesteps, desc=desc, disable=not progress, leave=False):
        tt = torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)
        e = eps_fn(x, tt)
        e = threshold_eps(x, e, float(ac[int(t)]), threshold, kernel)
        x = scheduler.step(e, t, x, **extra).prev_sample
    return x


def ddim_step_reference(
    x: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float, alpha_bar_prev: float
) -> torch.Tensor:
    """Eq. 4 written out, for checking: the deterministic DDIM update."""
    r = math.sqrt(alpha_bar_prev / alpha_bar_t)
    return r * x + (math.sqrt(1 - alpha_bar_prev) - r * math.sqrt(1 - alpha_bar_t)) * eps
