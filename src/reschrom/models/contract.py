"""Any diffusion model as one object: a denoiser ε(x_t, ᾱ, cond) in the VP convention.

Every stage (the CFG probe, prompt composing, x̂0 spectra) that runs a model that is *not* a
diffusers pipeline sees only this contract (docs/DESIGN.md, "Models have one home"):

* ``resolution`` (int), ``channels`` (int): the image the model generates;
* ``schedule``: a mapping in the config's schedule syntax (``{type: edm, sigma_min: 0.002, …}``,
  ``{type: flow_matching, shift: 3}``, ``{type: ddpm, beta_schedule: linear}``, …);
* ``encode(prompts: list[str]) -> cond`` and ``null_condition(batch: int) -> cond``;
* ``eps(x_t, alpha_bar, cond) -> Tensor``: the noise prediction in the variance-preserving
  convention of eq. 1, x_t = √ᾱ·x0 + √(1−ᾱ)·ε, with ``alpha_bar`` a tensor of shape (B,).

Every parameterisation reduces to it. The converters below turn a network of another
parameterisation into that ``eps`` in one line; each is exact (tests check them against the
closed-form posterior of a Gaussian model). With σ² = (1−ᾱ)/ᾱ (the variance-exploding noise
level of the same SNR) and x = x_t/√ᾱ = x0 + σ·ε:

* :func:`eps_from_x0_predictor` — x0 / EDM-preconditioned denoiser D(x; σ) ≈ E[x0 | x]:
  ε = (x − D(x; σ)) / σ  (eq. 7 solved for ε);
* :func:`eps_from_v_predictor` — v = √ᾱ·ε − √(1−ᾱ)·x0:  ε = √ᾱ·v + √(1−ᾱ)·x_t;
* :func:`eps_from_flow_velocity` — rectified flow x^flow = (1−s)x0 + s·ε with velocity
  u = ε − x0:  ᾱ = (1−s)²/((1−s)² + s²), x^flow = x_t·(1−s)/√ᾱ, ε = x^flow + (1−s)·u;
* :func:`eps_from_sigma_eps` — a VE / σ-parameterised ε predictor on x = x0 + σ·ε:
  ε = ε_VE(x_t/√ᾱ; σ).

All conversions are elementwise in per-sample scalars: none adds a network evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


EpsFn = Callable[["torch.Tensor", "torch.Tensor", Any], "torch.Tensor"]
"""eps(x_t, alpha_bar (B,), cond) -> ε̂ in the VP convention of eq. 1."""


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars (B,) (or a scalar) as (B, 1, …, 1) in ``like``'s dtype and device."""
    import torch

    v = torch.as_tensor(v, device=like.device)
    v = v.to(torch.promote_types(v.dtype, like.dtype) if v.is_floating_point() else like.dtype)
    return v.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def ve_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    """σ = √((1−ᾱ)/ᾱ): the VE noise level of the same SNR (SNR = 1/σ²)."""
    import torch

    a = torch.as_tensor(alpha_bar)
    return ((1.0 - a) / a).sqrt()


def alpha_bar_from_ve_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """ᾱ = 1/(1 + σ²): the VP signal level of a VE noise level σ."""
    import torch

    s = torch.as_tensor(sigma)
    return 1.0 / (1.0 + s * s)


def flow_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    """s = √(1−ᾱ)/(√ᾱ + √(1−ᾱ)): the rectified-flow time of a VP signal level (SNR = ((1−s)/s)²)."""
    import torch

    a = torch.as_tensor(alpha_bar)
    sa, sn = a.sqrt(), (1.0 - a).sqrt()
    return sn / (sa + sn)


def alpha_bar_from_flow_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """ᾱ = (1−s)²/((1−s)² + s²): the VP signal level of a rectified-flow time s."""
    import torch

    s = torch.as_tensor(sigma)
    return (1.0 - s) ** 2 / ((1.0 - s) ** 2 + s**2)


def eps_from_x0_predictor(x0_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> EpsFn:
    """An x0 (EDM-preconditioned) denoiser ``x0_fn(x, sigma, cond)`` on x = x0 + σ·n as ``eps``.

    ``sigma`` is passed as a (B,) tensor. ε = (x − D(x; σ))/σ with x = x_t/√ᾱ, σ = √((1−ᾱ)/ᾱ)
    (eq. 7: x̂0 = (x_t − √(1−ᾱ) ε)/√ᾱ, solved for ε).
    """
    import torch

    def eps(x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        a = _col(alpha_bar, x_t)
        sigma = ve_sigma(torch.as_tensor(alpha_bar, device=x_t.device))
        s = _col(sigma, x_t)
        x = x_t / a.sqrt()
        return (x - x0_fn(x, sigma, cond)) / s

    return eps


def eps_from_v_predictor(v_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> EpsFn:
    """A v predictor ``v_fn(x_t, alpha_bar, cond)`` (v = √ᾱ·ε − √(1−ᾱ)·x0) as ``eps``:
    ε = √ᾱ·v + √(1−ᾱ)·x_t."""

    def eps(x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        a = _col(alpha_bar, x_t)
        return a.sqrt() * v_fn(x_t, alpha_bar, cond) + (1.0 - a).sqrt() * x_t

    return eps


def eps_from_flow_velocity(u_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> EpsFn:
    """A rectified-flow velocity ``u_fn(x_flow, sigma, cond)`` (u = ε − x0 on
    x_flow = (1−s)·x0 + s·ε, ``sigma`` = s as a (B,) tensor) as ``eps``.

    s = √(1−ᾱ)/(√ᾱ + √(1−ᾱ)), x_flow = x_t·(1−s)/√ᾱ, ε = x_flow + (1−s)·u.
    """
    import torch

    def eps(x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        ab = torch.as_tensor(alpha_bar, device=x_t.device)
        s = flow_sigma(ab)
        a, sc = _col(ab, x_t), _col(s, x_t)
        x_flow = x_t * (1.0 - sc) / a.sqrt()
        return x_flow + (1.0 - sc) * u_fn(x_flow, s, cond)

    return eps


def eps_from_sigma_eps(e_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> EpsFn:
    """A VE / σ-parameterised ε predictor ``e_fn(x, sigma, cond)`` on x = x0 + σ·ε as ``eps``:
    the same ε at x = x_t/√ᾱ, σ = √((1−ᾱ)/ᾱ)."""
    import torch

    def eps(x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        a = _col(alpha_bar, x_t)
        return e_fn(x_t / a.sqrt(), ve_sigma(torch.as_tensor(alpha_bar, device=x_t.device)), cond)

    return eps


# --------------------------------------------------------------------------------------
# the contract: static check, loading, validation
# --------------------------------------------------------------------------------------
