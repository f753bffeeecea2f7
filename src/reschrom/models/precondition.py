"""A preconditioned ε-prediction UNet: the network learns the rectified-flow velocity, the
model answers ε.

EDM-style preconditioning (Karras et al. 2022, eq. 7: D = c_skip·x + c_out·F(c_in·x; c_noise))
of the VP ε-predictor of eq. 1. With x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε and

    σ_t = √(1−ᾱ_t) / (√ᾱ_t + √(1−ᾱ_t)),   x_flow = x_t / (√ᾱ_t + √(1−ᾱ_t)) = (1−σ_t)·x0 + σ_t·ε,

the ε of the same sample is ε = x_flow + (1−σ_t)·u with the rectified-flow velocity u = ε − x0
(:mod:`reschrom.models.flow`). The model is

    ε_θ(x_t, t, c) = c_skip(t)·x_t + c_out(t)·F_θ(x_t, t, c),
    c_skip(t) = 1 / (√ᾱ_t + √(1−ᾱ_t)),   c_out(t) = √ᾱ_t / (√ᾱ_t + √(1−ᾱ_t)),

so the UNet F_θ (input x_t and the DDPM timestep t, as IF's UNet) regresses u: training
minimises ‖F_θ − u‖² (``reschrom.training``; an ε loss weighted by 1/(1−σ_t)², the same
minimiser E[ε | x_t]). To everything outside, the model is an ordinary ε-predicting
``UNet2DConditionModel`` inside an ``IFPipeline``: diffusers' schedulers, classifier-free
guidance (eq. 5), the probe and the adapters see ε and nothing else.

Why (measured on the shapes toy, ``benchmarks/shapes_accuracy.py``): with the same UNet, data,
noise levels and loss, a network whose output is ε or v does not learn the shape words at the
default run's budget (shape accuracy 0.31–0.42), one whose output is u does (0.77).

:class:`PreconditionedUNet2DConditionModel` stores the preconditioning in its config
(``reschrom_precondition``: the type and the DDPM scheduler config that gives ᾱ_t), so a saved
pipeline reloads with ``DiffusionPipeline.from_pretrained`` once this module is imported
(:func:`reschrom.models.pipelines.load_pipeline` imports it). ``model_index.json`` names the class as
``["reschrom.models.precondition", "PreconditionedUNet2DConditionModel"]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from diffusers import ModelMixin, UNet2DConditionModel  # noqa: F401  (diffusers' loader looks ModelMixin up here)
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

PRECONDITIONS = ("flow_velocity",)
"""Values of a t2i model block's ``precondition`` key (absent: a plain ε UNet)."""
CONFIG_KEY = "reschrom_precondition"
_SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                  "rescale_betas_zero_snr")


def alphas_cumprod_of(scheduler_config: Mapping[str, Any]) -> torch.Tensor:
    """ᾱ_t, t = 0 … T−1 (float64), of a DDPM scheduler config: the table the pipeline samples with."""
    from diffusers import DDPMScheduler

    cfg = {k: v for k, v in dict(scheduler_config).items() if k in _SCHEDULE_KEYS}
    return DDPMScheduler.from_config(cfg).alphas_cumprod.double()


def alpha_bar_at(table: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """ᾱ at a (fractional) DDPM timestep: linear interpolation of ``table`` (T,), t clamped to
    [0, T−1]; float64 like the table on its device."""
    t = timestep.to(device=table.device, dtype=table.dtype).clamp(0, len(table) - 1)
    lo = t.floor().long().clamp(max=len(table) - 2)
    w = t - lo.to(t.dtype)
    return table[lo] * (1 - w) + table[lo + 1] * w


def timestep_of_sigma(table: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The fractional DDPM timestep whose flow time σ_t = √(1−ᾱ_t)/(√ᾱ_t+√(1−ᾱ_t)) is ``sigma``:
    ᾱ = (1−σ)²/((1−σ)²+σ²), inverted through the piecewise-linear ᾱ_t of :func:`alpha_bar_at`
    (clamped to the table's range). float32 (B,) on the CPU."""
    s = sigma.double().cpu()
    ab = ((1 - s) ** 2 / ((1 - s) ** 2 + s**2)).numpy()
    a = table.cpu().numpy()
    t = np.interp(ab, a[::-1], np.arange(len(a), dtype=np.float64)[::-1])  # ᾱ_t decreases in t
    return torch.from_numpy(t).float()


def eps_from_velocity(x_t: torch.Tensor, alpha_bar: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """ε = c_skip·x_t + c_out·u = (x_t + √ᾱ·u)/(√ᾱ + √(1−ᾱ)) with one ᾱ per sample (B,)."""
    wt = torch.float32 if x_t.device.type == "mps" else torch.float64  # MPS has no float64
    a = alpha_bar.reshape(-1, *([1] * (x_t.ndim - 1))).to(wt)
    sa, sn = a.sqrt(), (1 - a).sqrt()
    out = (x_t.to(wt) + sa * velocity.to(wt)) / (sa + sn)
    return out.to(velocity.dtype)


class PreconditionedUNet2DConditionModel(UNet2DConditionModel):
    """A ``UNet2DConditionModel`` whose ``forward`` returns ε_θ = c_skip·x_t + c_out·F_θ on the
    first C channels (C = the input's channels; IF's variance channels pass through) and whose
    :meth:`velocity` returns F_θ itself. Construct it as the parent, then call
    :meth:`set_precondition` once; the setting is saved in ``config.json``."""

    _table: torch.Tensor | None = None
    _on_device: dict | None = None

    @classmethod
    def extract_init_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> tuple[dict, dict, dict]:
        """The parent's, with the preconditioning kept as a config entry (not an init argument,
        so diffusers would call it unexpected)."""
        config_dict = dict(config_dict)
        spec = config_dict.pop(CONFIG_KEY, None)
        init_dict, unused, hidden = super().extract_init_dict(config_dict, **kwargs)
        if spec is not None:
            hidden[CONFIG_KEY] = spec
        return init_dict, unused, hidden

    def set_precondition(self, kind: str, scheduler_config: Mapping[str, Any]) -> PreconditionedUNet2DConditionModel:
        if kind not in PRECONDITIONS:
            raise ValueError(f"precondition {kind!r} is unknown; allowed: {', '.join(PRECONDITIONS)}")
        sched = {k: v for k, v in dict(scheduler_config).items() if k in _SCHEDULE_KEYS}
        self.register_to_config(**{CONFIG_KEY: {"type": kind, "scheduler": sched}})
        self._table, self._on_device = None, None
        return self

    @property
    def precondition(self) -> dict[str, Any]:
        spec = self.config.get(CONFIG_KEY)
        if not spec or spec.get("type") not in PRECONDITIONS:
            raise ValueError(f"{type(self).__name__}: config has no valid {CONFIG_KEY!r} (call set_precondition)")
        return dict(spec)

    def alphas_cumprod(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """ᾱ_t of the stored scheduler config, float64 (float32 where the device has no float64),
        copied to each device once (no host-to-device copy per sampling step)."""
        if self._table is None:
            self._table = alphas_cumprod_of(self.precondition["scheduler"])
        dev = torch.device(device)
        if self._on_device is None:
            self._on_device = {}
        if dev not in self._on_device:
            dt = torch.float32 if dev.type == "mps" else torch.float64
            self._on_device[dev] = self._table.to(device=dev, dtype=dt)
        return self._on_device[dev]

    def alpha_bar(self, timestep: Any, batch: int, device: torch.device | str) -> torch.Tensor:
        """ᾱ at ``timestep`` (int, float, 0-d or (B,) tensor) for a batch of ``batch``: (B,)."""
        t = torch.as_tensor(timestep, device=device).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        return alpha_bar_at(self.alphas_cumprod(device), t)

    def velocity(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        """F_θ(x_t, t, c): the parent UNet's output (all channels), which training fits to u."""
        kwargs["return_dict"] = False
        return super().forward(sample, timestep, encoder_hidden_states, *args, **kwargs)[0]

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                *args: Any, return_dict: bool = True, **kwargs: Any) -> Any:
        """ε_θ(x_t, t, c) = c_skip(t)·x_t + c_out(t)·F_θ(x_t, t, c) on the first C channels."""
        out = self.velocity(sample, timestep, encoder_hidden_states, *args, **kwargs)
        c = sample.shape[1]
        ab = self.alpha_bar(timestep, sample.shape[0], sample.device)
        eps = eps_from_velocity(sample, ab, out[:, :c])
        out = torch.cat([eps, out[:, c:]], dim=1) if out.shape[1] > c else eps
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)


# introspection (the adapters read argument positions from the signature) sees the parent's
PreconditionedUNet2DConditionModel.forward.__signature__ = inspect.signature(UNet2DConditionModel.forward)
