"""The guidance rules as a diffusers guider (``BaseGuidance``) for Modular Diffusers pipelines.

:class:`ChromatographyGuidance` is a drop-in replacement for diffusers'
``ClassifierFreeGuidance`` in a Modular pipeline (``pipe.update_components(guider=…)``, or a
``ComponentSpec`` default): the same two predictions (``pred_cond``, ``pred_uncond``), one
batch each, and ``forward`` combines them with a :class:`reschrom.guidance.rules.BandRule`
at the step's time. The guider's state gives the scheduler timestep; it is mapped to the
schedule's t_frac through the ``schedule`` of its config (a config mapping in the schedule
syntax of ``config.yaml``, e.g. ``{type: ddpm, beta_schedule: scaled_linear, beta_start:
0.00085, beta_end: 0.012}`` or ``{type: flow_matching, shift: 3.0}``; :meth:`for_scheduler`
reads it off a diffusers scheduler): a DDPM step t is t/(T−1), a flow-matching timestep σ·T is
σ. Everything in its config is JSON, so ``save_pretrained``/``from_pretrained`` round-trip it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.guiders.guider_utils import BaseGuidance, GuiderOutput

from reschrom.guidance.rules import BandRule, GuidanceError
from reschrom.guidance.settings import CHROMA_METHODS


def scheduler_schedule_spec(scheduler: Any) -> dict[str, Any]:
    """The schedule config mapping of a diffusers scheduler (DDPM family, flow matching, EDM)."""
    cfg = scheduler.config
    if getattr(scheduler, "alphas_cumprod", None) is not None:
        if cfg.get("trained_betas") is not None:
            raise GuidanceError("schedule: a scheduler with trained_betas has no config mapping; pass schedule explicitly")
        return {
            "type": "ddpm",
            "beta_schedule": cfg.get("beta_schedule", "linear"),
            "beta_start": float(cfg.get("beta_start", 1e-4)),
            "beta_end": float(cfg.get("beta_end", 0.02)),
            "num_train_timesteps": int(cfg.get("num_train_timesteps", 1000)),
            "rescale_betas_zero_snr": bool(cfg.get("rescale_betas_zero_snr", False)),
        }
    name = type(scheduler).__name__
    if "FlowMatch" in name:
        return {"type": "flow_matching", "shift": float(cfg.get("shift", 1.0))}
    if "EDM" in name:
        return {"type": "edm", "sigma_min": float(cfg.get("sigma_min", 0.002)),
                "sigma_max": float(cfg.get("sigma_max", 80.0)), "rho": float(cfg.get("rho", 7.0))}
    raise GuidanceError(f"schedule: cannot read a schedule off {name}; pass schedule explicitly")


class ChromatographyGuidance(BaseGuidance):
    """Per-band, per-time guidance (``reschrom.guidance.rules``) as a diffusers guider.

    Args: ``guidance_scale`` w; ``method`` one of cfg, interval, bands, chroma, chroma_window,
    chroma_onset; ``power`` (chroma), ``share`` (chroma_window: 0.5, chroma_onset: 0.3 when
    None), ``window`` (interval, t_frac [lo, hi]), ``scales`` (bands, finest first);
    ``schedule`` the model's schedule as a config mapping; ``num_train_timesteps`` T of the
    scheduler's timesteps; ``kernel`` of the pyramid; ``start``/``stop``/``enabled`` as every
    diffusers guider (outside, the conditional prediction alone).
    """

    _input_predictions = ["pred_cond", "pred_uncond"]

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 5.0,
        method: str = "chroma",
        power: float = 1.0,
        share: float | None = None,
        window: list[float] | None = None,
        scales: list[float] | None = None,
        schedule: dict[str, Any] | None = None,
        num_train_timesteps: int = 1000,
        kernel: int = 2,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ) -> None:
        from diffusers.utils import logging as dlog

        log = dlog.get_logger("diffusers.guiders.guider_utils")
        old = log.level
        log.setLevel(40)  # the base class warns "experimental" on every construction
        try:
            super().__init__(start, stop, enabled)
        finally:
            log.setLevel(old)
        sched = schedule or {"type": "ddpm", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
        self.rule = BandRule(
            method, scale=guidance_scale, scales=scales, window=window, power=power, share=share,
            schedule=sched if method in CHROMA_METHODS else None, kernel=kernel,
        )
        from reschrom.guidance.rules import as_schedule

        self._sched = as_schedule(sched)
        self.guidance_scale = float(guidance_scale)
        self.num_train_timesteps = int(num_train_timesteps)

    @classmethod
    def for_scheduler(cls, scheduler: Any, **kwargs: Any) -> ChromatographyGuidance:
        """A guider whose ``schedule`` and ``num_train_timesteps`` are ``scheduler``'s."""
        return cls(
            schedule=scheduler_schedule_spec(scheduler),
            num_train_timesteps=int(scheduler.config.get("num_train_timesteps", 1000)),
            **kwargs,
        )

    def t_frac(self, timestep: Any) -> float:
        """The schedule's t_frac of a scheduler timestep: a DDPM step; σ·T for flow matching, whose
        σ carries the scheduler's shift (σ = s·t/(1 + (s−1)·t), so t_frac is its inverse, not σ);
        EDM's c_noise = ln(σ)/4 (diffusers' ``EDMEulerScheduler.precondition_noise``)."""
        from reschrom.theory.schedules import DiscreteSchedule, EDMSchedule, FlowMatchingSchedule

        t = float(timestep.reshape(-1)[0].item() if isinstance(timestep, torch.Tensor) else timestep)
        if isinstance(self._sched, DiscreteSchedule):
            native = t
        elif isinstance(self._sched, FlowMatchingSchedule):
            native = t / self.num_train_timesteps
        elif isinstance(self._sched, EDMSchedule):
            native = math.exp(4.0 * t)
        else:
            raise GuidanceError(f"schedule: cannot place a timestep of a {type(self._sched).__name__} on the clock")
        return min(1.0, max(0.0, float(self._sched.t_frac_from_native(native))))

    def prepare_inputs(self, data: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> list[Any]:
        idx = [0] if self.num_conditions == 1 else [0, 1]
        return [self._prepare_batch(data, i, name) for i, name in zip(idx, self._input_predictions)]

    def prepare_inputs_from_block_state(self, data: Any, input_fields: dict[str, Any]) -> list[Any]:
        idx = [0] if self.num_conditions == 1 else [0, 1]
        return [self._prepare_batch_from_block_state(input_fields, data, i, name) for i, name in zip(idx, self._input_predictions)]

    def forward(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor | None = None) -> GuiderOutput:
        if not self._is_enabled() or pred_uncond is None:
            return GuiderOutput(pred=pred_cond, pred_cond=pred_cond, pred_uncond=pred_uncond)
        pred = self.rule(
            pred_cond, pred_uncond, self.t_frac(self._timestep), step=self._step,
            num_steps=self._num_inference_steps, timestep=self._timestep,
        )
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)

    @property
    def is_conditional(self) -> bool:
        return self._count_prepared == 1

    @property
    def num_conditions(self) -> int:
        return 2 if self._is_enabled() else 1

    def _is_enabled(self) -> bool:
        if not self._enabled:
            return False
        if self._num_inference_steps is not None:
            lo = int(self._start * self._num_inference_steps)
            hi = int(self._stop * self._num_inference_steps)
            if not lo <= self._step < hi:
                return False
        return True
