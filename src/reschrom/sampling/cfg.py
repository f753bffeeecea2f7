"""The project's sampler for denoiser models (the ε contract of :mod:`reschrom.models.contract`).

The project's own sampler for such models is deterministic DDIM (eq. 4, written through the
posterior mean x̂0 of eq. 7) with classifier-free guidance (eq. 5) or its composite form
(eq. 6): :func:`sample_cfg`, on the time grid of :func:`ddim_time_grid`.

torch is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from reschrom.models.module import ModuleModel

if TYPE_CHECKING:
    import torch

    from reschrom.theory.schedules import Schedule


def ddim_time_grid(schedule: Schedule, num_inference_steps: int, alpha_bar_min: float = 1e-4) -> np.ndarray:
    """The descending ``t_frac`` grid of :func:`sample_cfg`: N points uniform in the schedule's
    own time, t_start·(N, N−1, …, 1)/N.

    Uniform in the schedule's ``t_frac`` means each schedule keeps its own spacing: EDM gets the
    Karras ρ-spacing of σ, flow matching its shifted σ, DDPM evenly spaced steps. t_start = 1
    unless ᾱ(1) < ``alpha_bar_min`` (a pure-noise end, e.g. flow matching's σ = 1 or a
    zero-terminal-SNR cosine, where ᾱ = 0 and x̂0 of eq. 7 is undefined); then t_start is the
    time where ᾱ = ``alpha_bar_min``. After the last point (t_start/N) the sampler steps to
    ᾱ = 1, i.e. returns x̂0.
    """
    n = int(num_inference_steps)
    if n < 1:
        raise ValueError(f"num_inference_steps must be ≥ 1, got {num_inference_steps}")
    t_start = 1.0
    if float(schedule.alpha_bar(1.0)) < alpha_bar_min:
        t_start = float(schedule.t_frac_from_alpha_bar(alpha_bar_min))
    return t_start * np.arange(n, 0, -1, dtype=np.float64) / n


def sample_time(schedule: Schedule, t_frac: float) -> float:
    """The schedule's native time at ``t_frac`` (DDPM step, σ of flow matching/EDM), for dumps."""
    return float(schedule.native_t(t_frac))


def model_noise(
    model: ModuleModel, batch: int, seed: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """x_T ~ N(0, I) of shape (batch, channels, resolution, resolution) in ``model.dtype``,
    drawn on the CPU from ``torch.Generator().manual_seed(seed)`` and then moved to ``device``
    (default ``model.device``): the same seed gives the same noise on every device."""
    import torch

    device = model.device if device is None else device

    g = torch.Generator("cpu").manual_seed(int(seed))
    shape = (int(batch), model.channels, model.resolution, model.resolution)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=model.dtype)


def _expand(cond: Any, batch: int) -> Any:
    """A tensor condition of leading size 1 (or 0-dim) broadcast to ``batch`` rows."""
    import torch

    if isinstance(cond, torch.Tensor):
        if cond.ndim == 0:
            return cond.reshape(1).expand(batch)
        if cond.shape[0] == 1 and batch > 1:
            return cond.expand(batch, *cond.shape[1:])
        return cond
    if isinstance(cond, Mapping):
        return {k: _expand(v, batch) for k, v in cond.items()}
    return cond


def _concat(conds: list[Any]) -> Any | None:
    """The conditions of one batched evaluation concatenated on dim 0, or None when they
    cannot be (not all tensors, or mappings of tensors with the same keys, of matching shape)."""
    import torch

    def compatible(ts: list[Any]) -> bool:
        return all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in ts) and all(
            t.shape[1:] == ts[0].shape[1:] and t.dtype == ts[0].dtype and t.device == ts[0].device for t in ts
        )

    if compatible(conds):
        return torch.cat(conds, dim=0)
    if all(isinstance(c, Mapping) for c in conds):
        keys = list(conds[0].keys())
        if all(list(c.keys()) == keys for c in conds) and all(
            compatible([c[k] for c in conds]) for k in keys
        ):
            return {k: torch.cat([c[k] for c in conds], dim=0) for k in keys}
    return None


def sample_cfg(
    model: ModuleModel,
    conds: list[Any],
    uncond: Any,
    *,
    guidance_scale: float,
    num_inference_steps: int,
    x_T: torch.Tensor,
    weights: list[Callable[[float], float]] | None = None,
    prune_below: float = 0.0,
    on_step: Callable[..., Any] | None = None,
    progress: bool = False,
    guide: Callable[..., Any] | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eq. 4) with classifier-free guidance: plain (eq. 5) or composite (eq. 6).

    At each t of :func:`ddim_time_grid`, with ε_u = ε(x_t, t; ∅) and ε_i = ε(x_t, t; c_i):
    ε_c = ε_u + Σ_i w_i(t)[ε_i − ε_u] (the combined conditional prediction) and
    ε̃ = ε_u + s·(ε_c − ε_u) = ε_u + s·Σ_i w_i(t)[ε_i − ε_u] (eq. 6; with one condition of
    weight 1 it is eq. 5). The update is eq. 4 through the posterior mean of eq. 7:
    x̂0 = (x_t − √(1−ᾱ_t)·ε̃)/√ᾱ_t, x_{t−1} = √ᾱ_{t−1}·x̂0 + √(1−ᾱ_{t−1})·ε̃; after the last
    grid point ᾱ_{t−1} = 1 and the sample is x̂0.

    ``conds``: one condition per prompt (from ``model.encode``, B rows or 1 row broadcast);
    ``uncond``: ``model.null_condition(B)``. ``weights``: one ``w_i(t_frac)`` per condition
    (None: weight 1 for each). A condition with |w_i(t)| ≤ ``prune_below`` is not evaluated at
    that step (a negative ``prune_below`` evaluates all). Each step costs exactly
    (1 + #active)·B denoiser rows: one batched ``eps`` call with x repeated when the conditions
    concatenate on dim 0 (tensors, or mappings of tensors), else one call per condition.

    ``on_step(step, t_frac, alpha_bar, x_t, eps_uncond, eps_cond, eps_guided)`` is called once
    per step with tensors left on the device (the CFG term of eq. 19 is g = eps_cond − eps_uncond).
    ``guide(eps_uncond, eps_cond, t_frac, step) -> eps_guided`` replaces eq. 5's line
    ε_u + s(ε_c − ε_u) (per-band guidance, :mod:`reschrom.guidance`; ``guidance_scale`` is then
    unused); it adds no denoiser evaluation.
    ``x_T``: (B, C, H, W) in ``model.dtype`` on ``model.device`` (see :func:`model_noise`).
    Runs under ``torch.inference_mode``; returns x0 (B, C, H, W).
    """
    import torch
    from tqdm.auto import tqdm

    conds = list(conds)
    if not conds:
        raise ValueError("sample_cfg needs at least one condition")
    if weights is None:
        weights = [lambda _t: 1.0] * len(conds)
    if len(weights) != len(conds):
        raise ValueError(f"{len(weights)} weights for {len(conds)} conditions")
    grid = ddim_time_grid(model.schedule, num_inference_steps)
    abars = np.asarray(model.schedule.alpha_bar(grid), dtype=np.float64)
    abars_prev = np.append(abars[1:], 1.0)
    s = float(guidance_scale)
    batch = x_T.shape[0]
    ab_dtype = x_T.dtype if x_T.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.inference_mode():
        x = x_T
        uncond_b = _expand(uncond, batch)
        conds_b = [_expand(c, batch) for c in conds]
        for step in tqdm(range(len(grid)), desc=f"sampling {model.name}", disable=not progress, leave=False):
            t = float(grid[step])
            a, a_prev = float(abars[step]), float(abars_prev[step])
            ws = [float(w(t)) for w in weights]
            active = [i for i, w in enumerate(ws) if abs(w) > prune_below]
            group = [uncond_b, *(conds_b[i] for i in active)]
            cat = _concat(group) if len(group) > 1 else uncond_b
            if cat is not None:
                k = len(group)
                x_in = x if k == 1 else torch.cat([x] * k, dim=0)
                ab = torch.full((k * batch,), a, dtype=ab_dtype, device=x.device)
                outs = list(model.eps(x_in, ab, cat).split(batch, dim=0))
            else:
                ab = torch.full((batch,), a, dtype=ab_dtype, device=x.device)
                outs = [model.eps(x, ab, c) for c in group]
            e_u = outs[0]
            e_c = e_u
            for j, i in enumerate(active):
                e_c = e_c + ws[i] * (outs[1 + j] - e_u)
            e_g = e_u + s * (e_c - e_u) if guide is None else guide(e_u, e_c, t, step)
            if on_step is not None:
                on_step(step, t, a, x, e_u, e_c, e_g)
            x0 = (x - math.sqrt(1.0 - a) * e_g) / math.sqrt(a)
            x = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * e_g if a_prev < 1.0 else x0
    return x
