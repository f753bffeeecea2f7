"""Export of a designed schedule to diffusers: scheduler configs and sampling steps.

**Export to diffusers.** A designed schedule is used in two ways (:func:`scheduler_config`,
:func:`pipeline_kwargs`):

* *training a new model on it*: a VP (DDPM-family) base becomes ``trained_betas`` of a
  ``DDPMScheduler`` (or any scheduler of that family via ``from_config``):
  β_i = 1 − ᾱ'_i/ᾱ'_{i−1}, ᾱ'_i = ᾱ'(i/(T−1)), capped at 0.999 like diffusers' own
  ``betas_for_alpha_bar`` (a zero-terminal-SNR base keeps ᾱ'_{T−1} ≈ 0, not 0);
* *sampling a model trained on the base* with N steps evenly spaced in the designed time
  (t'_k = k/N, k = N … 1, then to t' = 0): a DDPM-family scheduler whose ``set_timesteps``
  accepts ``timesteps`` (DDPM, Euler, Heun, DPM-Solver, LCM, TCD …; *not* DDIMScheduler, which
  only takes evenly spaced steps — its update, eq. 4, is Euler's in σ = √((1−ᾱ)/ᾱ), so use
  ``EulerDiscreteScheduler``) gets the base's integer steps round(t(t'_k)·(T−1)), made strictly
  decreasing; ``EulerDiscreteScheduler`` also takes ``sigmas`` (the N + 1 values
  σ(t'_k) … 0); ``FlowMatchEulerDiscreteScheduler`` takes ``sigmas`` *before* its own shift
  (σ'(u) = su/(1 + (s−1)u) is applied inside ``set_timesteps``, so the designed σ is passed as
  u = σ/(s − (s−1)σ)); ``EDMEulerScheduler`` takes a ramp in [0, 1] into its Karras formula
  σ = (σ_max^{1/ρ} + ramp(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, inverted here. A pipeline passes these on
  (``pipe(..., timesteps=...)`` or ``sigmas=``, diffusers' ``retrieve_timesteps``; IFPipeline
  takes ``timesteps`` only).

Neither torch nor diffusers is imported at import time (theory jobs start fast).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reschrom.design.warp import MAX_BETA, Design, DesignError, WarpedSchedule
from reschrom.theory.schedules import ArrayLike, DiscreteSchedule, EDMSchedule, FlowMatchingSchedule, Schedule

# --------------------------------------------------------------------------------------
# diffusers export
# --------------------------------------------------------------------------------------


def designed_time_grid(num_inference_steps: int) -> np.ndarray:
    """t'_k = k/N for k = N … 0: N steps evenly spaced in the designed time, then t' = 0."""
    n = int(num_inference_steps)
    if n < 1:
        raise DesignError(f"num_inference_steps must be ≥ 1, got {num_inference_steps!r}")
    return np.arange(n, -1, -1, dtype=np.float64) / n


def base_time(schedule: Schedule, t_frac: np.ndarray) -> tuple[Schedule, np.ndarray]:
    """(base schedule, base time) of a designed (or any) schedule at ``t_frac``."""
    if isinstance(schedule, WarpedSchedule):
        return schedule.base, schedule.warp(t_frac)
    return schedule, np.asarray(t_frac, dtype=np.float64)


def strictly_decreasing_steps(t: ArrayLike, num_train_timesteps: int) -> np.ndarray:
    """Integer steps from real ones (descending): rounded, clipped to 0 … T−1, and where two
    coincide the earlier (noisier) one is moved up by one (down from T−1 where that overflows),
    so that no step is lost."""
    T = int(num_train_timesteps)
    if len(np.atleast_1d(t)) > T:
        raise DesignError(f"{len(np.atleast_1d(t))} distinct steps do not fit in {T} training steps")
    steps = np.clip(np.rint(np.asarray(t, dtype=np.float64)), 0, T - 1).astype(np.int64)
    for i in range(len(steps) - 2, -1, -1):
        steps[i] = max(steps[i], steps[i + 1] + 1)
    # pushed past T−1 at the noisy end: push down from there instead
    if len(steps):
        steps[0] = min(steps[0], T - 1)
    for i in range(1, len(steps)):
        steps[i] = min(steps[i], steps[i - 1] - 1)
    return steps


def ddpm_timesteps(schedule: Schedule, num_inference_steps: int, num_train_timesteps: int) -> list[int]:
    """N integer steps of a model trained on the base's T-step table, evenly spaced in the
    designed time (t'_k = k/N, k = N … 1): round(t(t'_k)·(T−1)), strictly decreasing."""
    _, tb = base_time(schedule, designed_time_grid(num_inference_steps)[:-1])
    return strictly_decreasing_steps(tb * (num_train_timesteps - 1), num_train_timesteps).tolist()


def _flow_shift(cfg: Mapping[str, Any], mu: float | None) -> float:
    if cfg.get("use_dynamic_shifting"):
        if mu is None:
            raise DesignError("this FlowMatchEulerDiscreteScheduler shifts dynamically: pass its `mu`")
        if cfg.get("time_shift_type", "exponential") == "linear":
            return float(mu)
        return float(math.exp(mu))
    return float(cfg.get("shift", 1.0))


SET_TIMESTEPS_PARAMS: dict[str, frozenset[str]] = {
    **{
        c: frozenset({"timesteps"})
        for c in (
            "DDPMScheduler",
            "DDPMParallelScheduler",
            "DPMSolverMultistepScheduler",
            "DPMSolverSinglestepScheduler",
            "HeunDiscreteScheduler",
            "LCMScheduler",
            "TCDScheduler",
        )
    },
    "EulerDiscreteScheduler": frozenset({"timesteps", "sigmas"}),
    "FlowMatchEulerDiscreteScheduler": frozenset({"timesteps", "sigmas"}),
    "EDMEulerScheduler": frozenset({"sigmas"}),
    "DDIMScheduler": frozenset(),
    "PNDMScheduler": frozenset(),
}
"""Custom ``set_timesteps`` arguments of the common diffusers schedulers (diffusers 0.42; tests
check it against diffusers), so that exporting a design imports neither torch nor diffusers.
Other classes are looked up in diffusers."""


def _set_timesteps_params(cls_name: str, scheduler: Any = None) -> frozenset[str]:
    """Which of ``timesteps``/``sigmas`` the scheduler class's ``set_timesteps`` accepts."""
    if cls_name in SET_TIMESTEPS_PARAMS:
        return SET_TIMESTEPS_PARAMS[cls_name]
    import inspect

    cls = type(scheduler) if scheduler is not None and not isinstance(scheduler, Mapping) else None
    if cls is None:
        import diffusers

        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            raise DesignError(f"scheduler class {cls_name!r} is not in diffusers")
    return frozenset(inspect.signature(cls.set_timesteps).parameters) & {"timesteps", "sigmas"}


def _config_alphas_cumprod(cfg: Mapping[str, Any]) -> np.ndarray:
    """ᾱ table of a DDPM-family scheduler config in NumPy (``trained_betas`` or ``beta_schedule``;
    zero terminal SNR as diffusers' Euler stores it, ᾱ_{T−1} = 2⁻²⁴)."""
    from reschrom.theory.schedules import ddpm_alphas_cumprod

    if cfg.get("trained_betas") is not None:
        ac = np.cumprod(1.0 - np.asarray(cfg["trained_betas"], dtype=np.float64))
    else:
        ac = ddpm_alphas_cumprod(
            cfg.get("beta_schedule", "linear"),
            float(cfg.get("beta_start", 1e-4)),
            float(cfg.get("beta_end", 0.02)),
            int(cfg.get("num_train_timesteps", 1000)),
            bool(cfg.get("rescale_betas_zero_snr", False)),
        )
    ac = ac.copy()
    if ac[-1] <= 0:
        ac[-1] = 2.0**-24
    return ac


def pipeline_kwargs(
    schedule: Schedule, num_inference_steps: int, scheduler: Any, mu: float | None = None, prefer: str = "sigmas"
) -> dict[str, list[float] | list[int]]:
    """What ``scheduler.set_timesteps(**kw)`` (and a pipeline's ``pipe(..., **kw)``) needs to take
    N steps evenly spaced in the designed time of ``schedule`` (module docstring, "Export").

    ``scheduler`` is a diffusers scheduler or its config (with ``_class_name``). Returns
    ``{"timesteps": [...]}`` (DDPM-family schedulers whose ``set_timesteps`` accepts them) or
    ``{"sigmas": [...]}`` (Euler: σ = √((1−ᾱ)/ᾱ) then 0; flow matching: before the scheduler's
    shift; EDM: the ramp of its Karras formula). Raises :class:`DesignError` for a scheduler
    that takes neither (e.g. ``DDIMScheduler``: use ``EulerDiscreteScheduler``, the same update).
    ``prefer="timesteps"`` gives an Euler scheduler integer steps instead of its exact σ (for a
    pipeline such as IFPipeline that passes on ``timesteps`` only).
    """
    if isinstance(scheduler, Mapping):
        cfg = dict(scheduler)
        cls_name = str(cfg.get("_class_name", "DDPMScheduler"))
    else:
        cfg, cls_name = dict(scheduler.config), type(scheduler).__name__
    params = _set_timesteps_params(cls_name, scheduler)
    tp = designed_time_grid(num_inference_steps)
    base, tb = base_time(schedule, tp)
    if "FlowMatch" in cls_name and "sigmas" in params:
        if cfg.get("shift_terminal") or cfg.get("use_karras_sigmas") or cfg.get("use_exponential_sigmas") or cfg.get(
            "use_beta_sigmas"
        ):
            raise DesignError(f"{cls_name}: custom sigmas are remapped by its config (shift_terminal/karras/…)")
        s = _flow_shift(cfg, mu)
        sigma = 1.0 / (1.0 + np.exp(base.log_snr(tb[:-1]) / 2))  # flow σ with ((1−σ)/σ)² = SNR
        return {"sigmas": (sigma / (s - (s - 1) * sigma)).tolist()}
    if cls_name.startswith("EDM") and "sigmas" in params:
        if cfg.get("sigma_schedule", "karras") != "karras":
            raise DesignError(f"{cls_name}: sigma_schedule {cfg.get('sigma_schedule')!r} ignores custom sigmas")
        rho = float(cfg.get("rho", 7.0))
        lo, hi = float(cfg.get("sigma_min", 0.002)) ** (1 / rho), float(cfg.get("sigma_max", 80.0)) ** (1 / rho)
        sigma = np.exp(-base.log_snr(tb[:-1]) / 2)
        return {"sigmas": ((sigma ** (1 / rho) - hi) / (lo - hi)).tolist()}
    T = int(cfg.get("num_train_timesteps", 1000))
    if "sigmas" in params and cls_name.startswith("Euler") and prefer == "sigmas":
        # at most the scheduler's own σ_max (a zero-terminal-SNR base has σ = ∞ at t = 1)
        ac = _config_alphas_cumprod(cfg)
        sigma = np.minimum(np.exp(-base.log_snr(tb) / 2), float(np.sqrt((1 - ac[-1]) / ac[-1])))
        sigma[-1] = 0.0
        return {"sigmas": sigma.tolist()}
    if "timesteps" in params:
        return {"timesteps": ddpm_timesteps(schedule, num_inference_steps, T)}
    raise DesignError(
        f"{cls_name}.set_timesteps takes neither custom timesteps nor sigmas; for DDIM (eq. 4) use "
        "EulerDiscreteScheduler.from_config(...), the same update in σ = √((1−ᾱ)/ᾱ)"
    )


def trained_betas(schedule: Schedule, num_train_timesteps: int = 1000) -> np.ndarray:
    """β_i = 1 − ᾱ'_i/ᾱ'_{i−1} of the designed schedule at t' = i/(T−1) (β_0 = 1 − ᾱ'_0), capped
    at :data:`MAX_BETA`."""
    T = int(num_train_timesteps)
    a = schedule.alpha_bar(np.arange(T) / (T - 1))
    prev = np.concatenate([[1.0], a[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        b = 1.0 - a / prev
    return np.clip(np.nan_to_num(b, nan=MAX_BETA), 0.0, MAX_BETA)


def scheduler_config(schedule: Schedule, num_train_timesteps: int = 1000, class_name: str = "DDPMScheduler") -> dict:
    """A diffusers scheduler config of the designed schedule (training on it): ``trained_betas``
    of T steps, loadable with ``DDPMScheduler.from_config`` (or DDIM, Euler, … of that family)."""
    return {
        "_class_name": class_name,
        "num_train_timesteps": int(num_train_timesteps),
        "trained_betas": trained_betas(schedule, num_train_timesteps).tolist(),
        "beta_schedule": "linear",
        "prediction_type": "epsilon",
        "clip_sample": False,
        "timestep_spacing": "trailing",
    }


def base_scheduler_config(base: Schedule, num_train_timesteps: int = 1000) -> dict:
    """The diffusers scheduler of a model trained on ``base`` (for :func:`pipeline_kwargs`):
    flow matching → FlowMatchEulerDiscreteScheduler(shift), EDM → EDMEulerScheduler (Karras),
    a VP table or continuous VP schedule → EulerDiscreteScheduler with the base's own betas
    (the DDIM update at any steps)."""
    if isinstance(base, FlowMatchingSchedule):
        return {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": base.shift}
    if isinstance(base, EDMSchedule):
        return {
            "_class_name": "EDMEulerScheduler",
            "sigma_min": base.sigma_min,
            "sigma_max": base.sigma_max,
            "rho": base.rho,
            "sigma_schedule": "karras",
        }
    T = base.num_steps if isinstance(base, DiscreteSchedule) else int(num_train_timesteps)
    cfg = scheduler_config(base, T, "EulerDiscreteScheduler")
    cfg["timestep_spacing"] = "leading"  # init_noise_sigma = √(σ_max² + 1): x_T ~ N(0, I) as DDIM
    return cfg


def export_design(design: Design, steps: Sequence[int], num_train_timesteps: int = 1000) -> dict:
    """Everything a diffusers user needs, as JSON-able data: the designed schedule as a
    scheduler config (``scheduler_config``: trained_betas; VP bases), the base's scheduler
    (``base_scheduler_config``) and for each N in ``steps`` the ``set_timesteps``/pipeline
    keyword arguments for it (``sampling``), with the shares achieved."""
    base = design.base
    base_cfg = base_scheduler_config(base, num_train_timesteps)
    out: dict[str, Any] = {
        "schedule": design.schedule.name,
        "base": base.name,
        "method": design.method,
        "num_levels": design.num_levels,
        "target": design.target.tolist(),
        "achieved": design.achieved.tolist(),
        "base_shares": design.base_shares.tolist(),
        "residual": design.residual,
        "converged": design.converged,
        "base_scheduler_config": base_cfg,
        "sampling": {},
    }
    if not isinstance(base, (FlowMatchingSchedule, EDMSchedule)):
        T = base.num_steps if isinstance(base, DiscreteSchedule) else int(num_train_timesteps)
        out["scheduler_config"] = scheduler_config(design.schedule, T)
    for n in steps:
        kw = pipeline_kwargs(design.schedule, int(n), base_cfg)
        if base_cfg["_class_name"].startswith("Euler"):  # DDPM-family pipelines (IF, DDPM)
            kw.update(pipeline_kwargs(design.schedule, int(n), base_cfg, prefer="timesteps"))
        out["sampling"][str(int(n))] = kw
    return out
