"""Pipeline families and their denoiser calls, for the adapter layer (:mod:`reschrom.models.adapters`).

====================  ==================  ==============  ================================
family                denoiser            x the call gets  output → ε
====================  ==================  ==============  ================================
``if`` (DeepFloyd)    ``unet`` (pixels)   ``sample``      first C of 2C channels (learned
                                                          variance dropped)
``sd`` (latent UNet)  ``unet`` (latents)  ``sample``      ε as is; v: ε = √ᾱ·v + √(1−ᾱ)·x_t;
                                                          x0: ε = (x_t − √ᾱ·x0)/√(1−ᾱ)
``sd3`` (flow)        ``transformer``     ``hidden_states``  velocity u = ε − x0 on
                                          (x_flow)        x_flow = (1−σ)x0 + σε:
                                                          ε = x_flow + (1−σ)·u
``oracle``            ``unet``            ``sample``      ε as is (exact posterior)
====================  ==================  ==============  ================================

For DDPM-family schedulers ᾱ is the scheduler's ``alphas_cumprod`` at the timestep (fractional
timesteps interpolate σ = √((1−ᾱ)/ᾱ) linearly, as diffusers' Euler schedulers do); for flow
matching ᾱ = (1−σ)²/((1−σ)² + σ²) (same SNR, ((1−σ)/σ)²), and σ is read on the clock the
pipeline gives its transformer, which differs between families: SD3 passes the scheduler's
timestep σ·T, AuraFlow σ itself (``t / 1000``), Sana σ·T·``transformer.config.timestep_scale``
(:data:`FLOW_CLOCKS`). A flow-matching pipeline of another class is refused with one line:
nothing is recorded on an assumed clock. The scheduler's own ``step`` always gets σ·T
(:meth:`PipelineAdapter.denoiser_timestep` converts).

Pipelines the adapter cannot read yet are refused by name (:func:`unsupported_reason`): loops
that call the denoiser twice per step (true CFG: Flux, Qwen-Image, Chroma, Lumina 2, CogView4),
packed latents (``_pack_latents``), Modular Diffusers pipelines (CFG through a guider),
HunyuanDiT's composing (two text streams) and pipelines without ``encode_prompt`` (Kandinsky 2.2).

:class:`PromptEmbeddings`, :func:`output_tensor` and :func:`replace_output` read and rewrite a denoiser call's
pieces.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch

FAMILIES = ("if", "sd", "sd3", "oracle")
"""Pipeline families: IF-like pixel UNet, latent UNet (Stable Diffusion), flow-matching
transformer (Stable Diffusion 3), the project's analytic oracle."""

PREDICTIONS = ("epsilon", "v_prediction", "sample", "flow")
"""What a denoiser outputs: ε, v, x0 (diffusers' ``sample``), or a flow-matching velocity."""


FLOW_CLOCKS: dict[str, str] = {
    "StableDiffusion3": "sigma_T",
    "AuraFlow": "sigma",
    "Sana": "sigma_T_scaled",
}
"""Flow-matching pipeline class prefix → the timestep its loop gives the transformer:
``sigma_T`` σ·T (the scheduler's own timestep), ``sigma`` σ (AuraFlow's ``t / 1000``),
``sigma_T_scaled`` σ·T·``transformer.config.timestep_scale`` (Sana)."""

TWO_CALL_PIPELINES: dict[str, str] = {
    "Flux": "",
    "QwenImage": "",
    "Chroma": "",
    "Lumina2": "; its transformer also gets 1 − σ and the loop negates its output",
    "CogView4": "",
    "HiDream": "",
}
"""Pipeline class prefixes whose loop calls the denoiser once per condition (cond, then uncond)."""


def unsupported_reason(pipe: Any) -> str | None:
    """One line saying why the adapter cannot read ``pipe``'s CFG steps, or None.

    Refused: Modular Diffusers pipelines (a guider runs one batch-1 call per condition),
    true-CFG loops that call the denoiser twice per step (:data:`TWO_CALL_PIPELINES`, or any
    ``__call__`` with ``true_cfg_scale``) and packed latents (``_pack_latents``: 2×2 patch
    tokens instead of (C, H, W)). The probe, the composer and the x̂0 capture pair only one
    batched [uncond, cond] call per step on (C, H, W) latents.
    """
    name = type(pipe).__name__
    mro = {c.__name__ for c in type(pipe).__mro__}
    if "ModularPipeline" in mro:
        return (
            f"{name} is a Modular Diffusers pipeline: its guider runs one batch-1 denoiser call per "
            "condition, and the adapter pairs only one batched [uncond, cond] call per step; build the "
            "classic pipeline class from the same components instead"
        )
    extra = next((v for k, v in TWO_CALL_PIPELINES.items() if name.startswith(k)), None)
    true_cfg = callable(pipe) and "true_cfg_scale" in inspect.signature(pipe.__call__).parameters
    packed = hasattr(pipe, "_pack_latents")
    if extra is not None or true_cfg:
        return (
            f"{name} calls its transformer twice per step (conditional, then unconditional: true CFG)"
            f"{' on 2×2-packed latents' if packed else ''}{extra or ''}; the adapter pairs only one "
            "batched [uncond, cond] call per step on (C, H, W) latents: this family is not supported yet"
        )
    if packed:
        return (
            f"{name} packs its latents into 2×2 patch tokens (_pack_latents); the adapter computes "
            "bands only on (C, H, W) latents: this family is not supported yet"
        )
    return None


def flow_clock(pipe: Any, denoiser: torch.nn.Module) -> float:
    """``time_scale`` with σ = timestep / time_scale for the transformer calls of ``pipe``
    (:data:`FLOW_CLOCKS`); a class it does not know is refused with one line."""
    name = type(pipe).__name__
    T = float(pipe.scheduler.config.get("num_train_timesteps", 1000))
    clock = next((v for k, v in FLOW_CLOCKS.items() if name.startswith(k)), None)
    if clock == "sigma_T":
        return T
    if clock == "sigma":
        return 1.0
    if clock == "sigma_T_scaled":
        return T * float(denoiser.config.get("timestep_scale", 1.0))
    raise ValueError(
        f"{name}: the adapter does not know which clock this flow-matching pipeline gives its "
        f"{type(denoiser).__name__} (σ·T as StableDiffusion3, σ as AuraFlow, 1 − σ as Lumina 2, …), "
        f"and records nothing on an assumed one; known: {', '.join(k + '*' for k in FLOW_CLOCKS)}"
    )


class PromptEmbeddings(NamedTuple):
    """One prompt encoded by its pipeline: everything of it the denoiser sees.

    ``pooled_*`` are the pooled text embeddings (SD3's ``pooled_projections``, SDXL's
    ``added_cond_kwargs["text_embeds"]``), ``mask_*`` the text attention masks (PixArt, Sana,
    AuraFlow: ``prompt_attention_mask``); None for pipelines without them.
    """

    cond: torch.Tensor
    uncond: torch.Tensor
    pooled_cond: torch.Tensor | None = None
    pooled_uncond: torch.Tensor | None = None
    mask_cond: torch.Tensor | None = None
    mask_uncond: torch.Tensor | None = None

    def pipeline_kwargs(self) -> dict[str, torch.Tensor]:
        """The ``pipe(...)`` keyword arguments that pass these embeddings instead of a prompt."""
        kw = {"prompt_embeds": self.cond, "negative_prompt_embeds": self.uncond}
        if self.pooled_cond is not None:
            kw["pooled_prompt_embeds"] = self.pooled_cond
            kw["negative_pooled_prompt_embeds"] = self.pooled_uncond
        if self.mask_cond is not None:
            kw["prompt_attention_mask"] = self.mask_cond
            kw["negative_prompt_attention_mask"] = self.mask_uncond
        return kw


def output_tensor(output: Any) -> torch.Tensor:
    """The prediction tensor of a denoiser output (a tensor, a tuple, or a ``.sample`` output)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    if hasattr(output, "sample"):
        return output.sample
    raise TypeError(f"cannot read the denoiser output of type {type(output).__name__}")


def replace_output(output: Any, new: torch.Tensor) -> Any:
    """``output`` with its prediction tensor replaced by ``new`` (same container type)."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, (tuple, list)):
        return type(output)([new, *output[1:]])
    output.sample = new
    return output
