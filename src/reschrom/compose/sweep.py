"""Composing sweeps (paper §4.3, Fig. 5): a pair of prompts composed over η, the rule entry point
(:func:`run_compose_pair`), with the level energies of every image and the model's schedule table.

:func:`compose_sweep` takes any model of the registry: a diffusers pipeline (run by
:class:`reschrom.compose.composer.PromptComposer`) or a ``kind: module`` model (the project's DDIM
with eq. 6's weights), chosen by :func:`reschrom.models.module.is_denoiser`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from reschrom.compose.composer import PromptComposer, save_png, to_chw
from reschrom.compose.pairs import COMPOSE_COLUMNS, eta_label, pair_id, sweep_etas
from reschrom.compose.weights import make_weights
from reschrom.models.adapters import PipelineAdapter
from reschrom.models.families import configured_call
from reschrom.models.module import is_denoiser


def model_schedule_table(net: Any, kernel: int = 2, n_t: int = 200) -> Any:
    """The theory table (eq. 16, 18) of the model's own schedule at its denoiser's resolution:
    a diffusers pipeline's through the adapter layer, a ``kind: module`` model's own."""
    from reschrom.theory.resolution import theory_table

    if is_denoiser(net):
        return theory_table(net.schedule, int(net.resolution), n_t, kernel)
    adapter = PipelineAdapter.for_pipeline(net)
    return theory_table(adapter.schedule(name="model"), adapter.resolution, n_t, kernel)


def _sweep_rows(
    images: Mapping[float, torch.Tensor], model: str, pid: str, s: str, x: str, weighting: str, seed: int, kernel: int
) -> list[dict[str, Any]]:
    """Rows of :data:`COMPOSE_COLUMNS` for one pair: band energies (eq. 19) of each η image's
    difference from the two references (η = 0: structure alone, η = 1: texture alone)."""
    from reschrom.theory.pyramid import band_energies
    from reschrom.theory.resolution import level_resolutions

    ref_s, ref_x = images[0.0], images[1.0]
    res = level_resolutions(ref_s.shape[-1], kernel)
    rows = []
    for eta, img in images.items():
        es = band_energies(img - ref_s, kernel)[0].numpy()
        ex = band_energies(img - ref_x, kernel)[0].numpy()
        for m in range(len(es)):
            rows.append(
                {
                    "model": model,
                    "pair_id": pid,
                    "structure": s,
                    "texture": x,
                    "weighting": weighting,
                    "eta": float(eta),
                    "seed": int(seed),
                    "m": m,
                    "resolution": int(res[m]),
                    "energy_vs_structure": float(es[m]),
                    "energy_vs_texture": float(ex[m]),
                    "share_vs_structure": float(es[m] / es.sum()) if es.sum() > 0 else 0.0,
                    "share_vs_texture": float(ex[m] / ex.sum()) if ex.sum() > 0 else 0.0,
                }
            )
    return rows


def compose_sweep(
    net: Any,
    pairs: Sequence[Mapping[str, str]],
    etas: Sequence[float],
    out_dir: str,
    *,
    model: str,
    seed: int = 0,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 50,
    weighting: str = "heaviside",
    width: float | None = None,
    kernel: int = 2,
    device: torch.device | str | None = None,
    call_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """Render every pair at every η of :func:`sweep_etas` with one seed; return the metrics.

    ``net`` is any model of the registry (what :func:`reschrom.models.registry.load_model`
    returns), dispatched by :func:`reschrom.models.module.is_denoiser`: a diffusers pipeline
    is run by :class:`reschrom.compose.composer.PromptComposer` (its own loop, eq. 6's weights
    hooked in through the adapter layer; ``device`` is its generator's device, default the
    pipeline's execution device; ``call_kwargs`` go to the pipeline call); a ``kind: module``
    model by the project's DDIM (eq. 4) with eq. 6's time-dependent weights, evaluating only the
    active prompts at each step (``t_frac`` of the weights is the schedule's time fraction; its
    images are x0 mapped from [-1, 1] to [0, 1]; ``call_kwargs`` are refused, ``device`` must be
    the model's).

    Images go to ``{out_dir}/{pair_id}/eta_{η}.png``; every η of one pair starts from the same
    initial noise (seeded ``seed``). Returns the DataFrame of :data:`COMPOSE_COLUMNS` (rows for
    the configured η and the references 0 and 1).
    """
    import os

    import pandas as pd

    opts = dict(
        seed=int(seed), guidance_scale=float(guidance_scale), num_inference_steps=int(num_inference_steps),
        weighting=weighting, width=width, kernel=kernel,
    )
    if is_denoiser(net):
        if call_kwargs:
            raise ValueError(f"model {model!r}: call_kwargs are diffusers pipeline arguments; a kind: module model takes none")
        if device is not None and torch.device(device) != net.device:
            raise ValueError(f"model {model!r}: device {device} is not the model's ({net.device})")
        render = _denoiser_renderer(net, **opts)
    else:
        render = _pipeline_renderer(net, model=model, device=device, call_kwargs=call_kwargs, **opts)
    rows = []
    for pair in pairs:
        s, x = str(pair["structure"]), str(pair["texture"])
        pid = pair_id(s, x)
        draw = render(s, x)
        images: dict[float, torch.Tensor] = {}
        for eta in sweep_etas(etas):
            images[eta] = img = draw(eta)
            save_png(img[0], os.path.join(out_dir, pid, f"eta_{eta_label(eta)}.png"))
        rows += _sweep_rows(images, model, pid, s, x, weighting, seed, kernel)
    return pd.DataFrame(rows, columns=COMPOSE_COLUMNS)


_Renderer = Callable[[str, str], Callable[[float], torch.Tensor]]
"""A strategy of :func:`compose_sweep`: (structure, texture) → (η → the (1, C, H, W) image in [0, 1])."""


def _pipeline_renderer(
    pipe: Any,
    *,
    model: str,
    seed: int,
    guidance_scale: float,
    num_inference_steps: int,
    weighting: str,
    width: float | None,
    kernel: int,
    device: torch.device | str | None,
    call_kwargs: Mapping[str, Any] | None,
) -> _Renderer:
    """A diffusers pipeline through :class:`PromptComposer`; every η from a generator seeded
    ``seed`` on ``device``."""
    from reschrom.theory.resolution import num_levels

    dev = torch.device(device) if device is not None else pipe._execution_device
    T = int(pipe.scheduler.config.get("num_train_timesteps", 1000))
    adapter = PipelineAdapter.for_pipeline(pipe)
    M = num_levels(adapter.resolution, kernel)
    schedule = adapter.schedule(name=model) if weighting == "bands" else None
    # the registry entry's call (FLUX.1-dev: its distilled guidance_scale), then the stage's; the
    # stage's guidance_scale is the pipeline's CFG scale (true_cfg_scale for Flux and Qwen-Image)
    extra = {**configured_call(pipe, adapter.cfg_scale_arg), **dict(call_kwargs or {})}
    extra.pop("negative_prompt", None)  # the composer passes the negative embeddings itself

    def render(s: str, x: str) -> Callable[[float], torch.Tensor]:
        def draw(eta: float) -> torch.Tensor:
            w = make_weights(weighting, eta, width, schedule, M, T, kernel)
            composer = PromptComposer(pipe, [s, x], w, device=dev)
            gen = torch.Generator(device=dev).manual_seed(seed)
            out = composer(
                generator=gen,
                **{adapter.cfg_scale_arg: guidance_scale},
                num_inference_steps=num_inference_steps,
                output_type="np",
                **extra,
            )
            return to_chw(out.images)[:1]

        return draw

    return render


def _denoiser_renderer(
    den: Any,
    *,
    seed: int,
    guidance_scale: float,
    num_inference_steps: int,
    weighting: str,
    width: float | None,
    kernel: int,
) -> _Renderer:
    """A ``kind: module`` model through :func:`reschrom.sampling.cfg.sample_cfg` with the
    weights of eq. 6; every η from x_T of :func:`reschrom.sampling.cfg.model_noise` (``seed``)."""
    from reschrom.sampling.cfg import model_noise, sample_cfg
    from reschrom.theory.resolution import num_levels

    M = num_levels(int(den.resolution), kernel)

    def render(s: str, x: str) -> Callable[[float], torch.Tensor]:
        conds = [den.encode([s]), den.encode([x])]
        uncond = den.null_condition(1)

        def draw(eta: float) -> torch.Tensor:
            w = make_weights(weighting, eta, width, den.schedule, M, 1, kernel)
            x_T = model_noise(den, 1, seed, den.device)
            x0 = sample_cfg(
                den, conds, uncond, weights=w, guidance_scale=guidance_scale,
                num_inference_steps=num_inference_steps, x_T=x_T,
            )
            return ((x0.double().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)

        return draw

    return render


def run_compose_pair(
    model_spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    pair: Mapping[str, str],
    *,
    model: str,
    etas: Sequence[float],
    out_dir: str,
    metrics_out: str,
    theory_out: str,
    seed: int = 0,
    weighting: str = "heaviside",
    width: float | None = None,
    kernel: int = 2,
    device: str = "auto",
) -> None:
    """Rule glue for one pair of registry model ``model_spec`` with the stage ``settings``:
    images ``{out_dir}/eta_{η}.png``, its metrics and the model's theoretical chromatography
    (the strip of Fig. 7)."""
    import os
    import shutil
    import tempfile

    from reschrom.io import write_parquet
    from reschrom.models.registry import load_model

    net = load_model(model_spec, device, resolution=settings.get("resolution"), sampler=settings.get("sampler", "default"))
    pid = pair_id(pair["structure"], pair["texture"])
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out_dir)) or ".") as tmp:
        df = compose_sweep(
            net, [pair], etas, tmp, model=model, seed=seed, guidance_scale=float(settings["guidance_scale"]),
            num_inference_steps=int(settings["num_inference_steps"]), weighting=weighting, width=width, kernel=kernel,
        )
        os.makedirs(out_dir, exist_ok=True)
        for name in os.listdir(os.path.join(tmp, pid)):
            shutil.move(os.path.join(tmp, pid, name), os.path.join(out_dir, name))
    write_parquet(model_schedule_table(net, kernel), theory_out)
    write_parquet(df, metrics_out)
