"""The NFE experiment: step placements compared at equal numbers of function evaluations.

**NFE experiment** (:func:`run_nfe`). A trained ε model sampled with DDIM (η = 0, x̂0 clamped to
[-1, 1] with ε recomputed, as the workflow's DDPM models are saved with ``clip_sample``) at each NFE
with four step placements from the same x_T: DDIMScheduler's ``leading`` and ``trailing``
spacing, Karras ρ = 7 σ-spacing, and ``balanced`` (N steps evenly spaced in the time of the
equal-share design of the model's own ᾱ table), scored against held-out data.

This module imports neither torch nor diffusers at import time; :func:`run_nfe` and the
diffusers checks import them inside.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from reschrom.design.export import ddpm_timesteps, strictly_decreasing_steps
from reschrom.design.warp import DesignError, design_schedule
from reschrom.theory.resolution import num_levels
from reschrom.theory.schedules import ArrayLike, DiscreteSchedule

NFE_TASKS = ("lowres", "t2i")
"""Trained ε models the NFE experiment samples (a DDPMPipeline, an IFPipeline)."""
SPACINGS = ("leading", "trailing", "karras", "balanced")
"""Step placements of the NFE experiment: diffusers' DDIM ``timestep_spacing`` leading and
trailing, Karras ρ = 7 σ-spacing mapped to the model's steps, and the designed equal-share one."""


# --------------------------------------------------------------------------------------
# NFE experiment (imports torch and diffusers inside)
# --------------------------------------------------------------------------------------


def spacing_timesteps(
    spacing: str, num_inference_steps: int, scheduler_config: Mapping[str, Any], num_levels: int, kernel: int = 2
) -> list[int]:
    """N integer steps of a DDPM-family model for one spacing (:data:`SPACINGS`): ``leading``
    and ``trailing`` as diffusers' DDIMScheduler places them, ``karras`` the ρ = 7 σ-spacing of
    EulerDiscreteScheduler(use_karras_sigmas=True) between the table's σ_min and σ_max mapped to
    the model's steps, ``balanced`` evenly spaced in the time of the equal-share design of the
    model's own ᾱ table; all rounded and strictly decreasing (:func:`strictly_decreasing_steps`)."""
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    cfg = dict(scheduler_config)
    T = int(cfg.get("num_train_timesteps", 1000))
    n = int(num_inference_steps)
    if spacing in ("leading", "trailing"):
        s = DDIMScheduler.from_config(cfg, timestep_spacing=spacing)
        s.set_timesteps(n)
        ts = s.timesteps.numpy().astype(np.float64)
    elif spacing == "karras":
        s = EulerDiscreteScheduler.from_config(cfg, use_karras_sigmas=True)
        s.set_timesteps(n)
        ts = s.timesteps.numpy().astype(np.float64)
    elif spacing == "balanced":
        s = EulerDiscreteScheduler.from_config(cfg)
        base = DiscreteSchedule(np.asarray(s.alphas_cumprod, dtype=np.float64), name="model")
        d = design_schedule(base, num_levels, "equal", kernel=kernel)
        return ddpm_timesteps(d.schedule, n, T)
    else:
        raise DesignError(f"spacing {spacing!r} is unknown; allowed: {', '.join(SPACINGS)}")
    return strictly_decreasing_steps(ts, T).tolist()


def ddim_scheduler(scheduler_config: Mapping[str, Any]) -> Any:
    """DDIM (eq. 4, η = 0) at any steps: diffusers' EulerDiscreteScheduler from the model's
    config (the same update in σ = √((1−ᾱ)/ᾱ); DDIMScheduler takes evenly spaced steps only),
    ``timestep_spacing`` leading so that x_T ~ N(0, I) (init σ = √(σ_max² + 1)), last step to σ = 0."""
    from diffusers import EulerDiscreteScheduler

    cfg = {k: v for k, v in dict(scheduler_config).items() if k != "_class_name"}
    s = EulerDiscreteScheduler.from_config(cfg, timestep_spacing="leading", final_sigmas_type="zero")
    # IFPipeline reads variance_type: fixed_small makes it split off a learned variance (Euler takes ε)
    s.register_to_config(variance_type="fixed_small")
    return s


def threshold_hook(unet: Any, alphas_cumprod: ArrayLike, mode: str = "static", kernel: int = 2) -> Any:
    """A forward hook on ``unet`` that thresholds x̂0 (eq. 7) of its ε output and recomputes ε
    from it (``reschrom.sampling.samplers.threshold_eps``: ``static`` clamps x̂0 to [-1, 1], ``multires``
    is Algorithm 1), so that any diffusers loop — Euler's, which has no clipping, or a
    pipeline's — samples as the project's DDIM with that threshold (``reschrom.sampling.samplers.sample``;
    unlike DDIMScheduler's ``clip_sample``, which keeps the raw ε in the step). The UNet's input is
    the VP x_t (after ``scale_model_input``) and its timestep an integer step of the table
    ``alphas_cumprod``; extra output channels (IF's learned variance) pass unchanged. Returns the
    hook handle (``.remove()``)."""
    import torch

    from reschrom.sampling.samplers import threshold_eps

    ac = np.asarray(alphas_cumprod, dtype=np.float64)
    steps = np.arange(len(ac), dtype=np.float64)
    C = int(unet.config.in_channels)

    def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        x = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        a = float(np.interp(float(torch.as_tensor(t).reshape(-1)[0]), steps, ac))
        out = output[0] if isinstance(output, tuple) else output.sample
        eps = threshold_eps(x.to(out.dtype), out[:, :C], a, mode, kernel)
        out = torch.cat([eps, out[:, C:]], dim=1) if out.shape[1] > C else eps
        return (out, *output[1:]) if isinstance(output, tuple) else type(output)(sample=out)

    return unet.register_forward_hook(hook, with_kwargs=True)


def _band_error(metrics: Mapping[str, float]) -> float:
    """Mean over levels of |10·log10(E_samples,m / E_data,m)| (dB): the per-band energy error."""
    ratios = [v for k, v in metrics.items() if k.startswith("energy_ratio_m")]
    return float(np.mean([abs(10 * math.log10(max(r, 1e-30))) for r in ratios]))


def run_nfe(
    model_dir: str,
    data_path: str,
    name: str,
    nfe: Sequence[int],
    spacings: Sequence[str],
    num_samples: int,
    seeds: Sequence[int],
    guidance_scale: float = 4.0,
    captions_path: str | None = None,
    kernel: int = 2,
    device: str = "cpu",
    max_data: int = 512,
    threshold: str = "static",
) -> pd.DataFrame:
    """Sample a trained ε model with DDIM (:func:`ddim_scheduler`) at every (spacing, NFE, seed)
    from the same x_T per seed, and score the samples against held-out data (``reschrom.measure.metrics``):
    ``lsd_db`` (RAPSD log-spectral distance), ``band_error`` (:func:`_band_error`), ``diversity``;
    a text model (IFPipeline) also ``accuracy_colour``/``accuracy_shape`` of its captions.
    ``threshold`` (default ``static``, as the workflow's DDPM models are saved with ``clip_sample``)
    thresholds x̂0 at every step (:func:`threshold_hook`); without it an ε model
    started at t = T−1 (trailing, balanced) amplifies its error at ᾱ_{T−1} ≈ 0 by 1/√ᾱ."""
    import torch

    from reschrom.io import read_images
    from reschrom.measure.metrics import sample_metrics
    from reschrom.models.builders import load_trained_pipeline
    from reschrom.models.pipelines import resolve_device
    from reschrom.sampling.samplers import initial_noise

    device = str(resolve_device(device))
    pipe = load_trained_pipeline(model_dir, device)
    pipe.set_progress_bar_config(disable=True)
    unet = pipe.unet
    cfg = dict(pipe.scheduler.config)
    res = int(unet.config.sample_size)
    C = int(unet.config.in_channels)
    M = num_levels(res, kernel)
    data = torch.from_numpy(read_images(data_path, limit=max_data))
    text = hasattr(pipe, "tokenizer") and getattr(pipe, "text_encoder", None) is not None
    prompts = None
    if text:
        from reschrom.data.dataset import load_captions

        caps = load_captions(captions_path)["caption"].tolist()
        prompts = [caps[i % len(caps)] for i in range(int(num_samples))]
    hook = None
    if threshold != "none":
        import torch

        ac = torch.as_tensor(pipe.scheduler.alphas_cumprod).double().cpu().numpy()
        hook = threshold_hook(unet, ac, threshold, kernel)
    rows = []
    for spacing in spacings:
        for n in nfe:
            ts = spacing_timesteps(spacing, int(n), cfg, M, kernel)
            for seed in seeds:
                x_T = initial_noise((int(num_samples), C, res, res), int(seed), device)
                if text:
                    pipe.scheduler = ddim_scheduler(cfg)
                    x = _sample_text(pipe, prompts, ts, guidance_scale, x_T)
                else:
                    x = _sample_unconditional(unet, ddim_scheduler(cfg), ts, x_T)
                m = sample_metrics(x.float().cpu(), data, kernel)
                row = {
                    "model": name,
                    "spacing": spacing,
                    "nfe": int(n),
                    "seed": int(seed),
                    "lsd_db": m["lsd_db"],
                    "band_error": _band_error(m),
                    "diversity": m["diversity"],
                    "diversity_coarse": m["diversity_coarse"],
                    "threshold": threshold,
                    "timesteps": json.dumps(ts),
                    **{k: v for k, v in m.items() if k.startswith("energy_ratio_m")},
                }
                if text:
                    from reschrom.measure.metrics import caption_accuracy

                    acc = caption_accuracy(x.clamp(-1, 1).cpu(), prompts)
                    row["accuracy_colour"] = float(acc["colour_ok"].mean())
                    row["accuracy_shape"] = float(acc["shape_ok"].mean())
                rows.append(row)
    if hook is not None:
        hook.remove()
    return pd.DataFrame(rows)


def _sample_unconditional(unet: Any, scheduler: Any, timesteps: Sequence[int], x_T: Any) -> Any:
    """diffusers' sampling loop (DDPMPipeline's, with custom ``timesteps``)."""
    import torch

    scheduler.set_timesteps(timesteps=list(timesteps), device=x_T.device)
    x = x_T * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(eps, t, x).prev_sample
    return x


def _sample_text(pipe: Any, prompts: Sequence[str], timesteps: Sequence[int], guidance_scale: float, x_T: Any) -> Any:
    """IFPipeline with custom ``timesteps`` (its ``pipe(..., timesteps=...)``) from x_T."""
    import torch

    gen = torch.Generator("cpu").manual_seed(0)
    # IFPipeline draws x_T itself and scales it by init_noise_sigma: hand it ours through `latents`
    # where supported, else through the generator-free path of prepare_intermediate_images.
    orig = pipe.prepare_intermediate_images

    def _prep(batch_size, num_channels, height, width, dtype, device, generator):
        return x_T.to(device=device, dtype=dtype) * pipe.scheduler.init_noise_sigma

    pipe.prepare_intermediate_images = _prep
    try:
        out = pipe(
            list(prompts),
            timesteps=list(timesteps),
            guidance_scale=float(guidance_scale),
            generator=gen,
            output_type="pt",
            clean_caption=False,
        ).images
    finally:
        pipe.prepare_intermediate_images = orig
    return out.float()


def write_nfe(
    model_dir: str,
    data_path: str,
    out: str,
    name: str,
    settings: Mapping[str, Any],
    captions_path: str | None = None,
    kernel: int = 2,
    device: str = "cpu",
    threads: int | None = None,
) -> None:
    """The workflow's NFE job: ``results/design/nfe/{model}.parquet`` (:func:`run_nfe`)."""
    import torch

    from reschrom.io import write_parquet

    if threads:
        torch.set_num_threads(int(threads))
    df = run_nfe(
        model_dir,
        data_path,
        name,
        settings["nfe"],
        settings["spacings"],
        int(settings["num_samples"]),
        settings["seeds"],
        float(settings.get("guidance_scale", 4.0)),
        captions_path,
        kernel,
        device,
        int(settings.get("max_data", 512)),
        settings.get("threshold", "static"),
    )
    write_parquet(df, out)

