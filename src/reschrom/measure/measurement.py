"""Measuring the chromatography of CFG (paper §4.1, eq. 19): one guidance dump per prompt.

:func:`measure_guidance` is the one entry point for any model of the registry: it runs the model
on a list of prompts, ``batch_prompts`` per call, and returns the per-(sample, step, m) band
energies of the CFG term g = ε(x,t;c) − ε(x,t). A diffusers pipeline runs its own loop under a
:class:`reschrom.measure.probe.GuidanceProbe`; a ``kind: module`` model runs the project's DDIM
with CFG (the choice is :func:`reschrom.models.module.is_denoiser`'s). Each prompt draws its
noise from its own generator, so its dump does not depend on its batch. :func:`write_guidance_shard` is the rule entry point of a shard (one
``results/guidance/{model}/{prompt_id}.parquet`` per prompt), :func:`write_guidance_dump` that of
one prompt (with the optional tensors).

torch and diffusers are imported lazily, inside the functions that run a model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reschrom.measure.guidance import warn_undefined
from reschrom.measure.prompts import prompt_id

# --------------------------------------------------------------------------------------
# measurement: diffusers pipelines (hooked) and denoiser models (the project's DDIM)
# --------------------------------------------------------------------------------------
#
# Prompts are measured in batches of ``batch_prompts`` prompts, one pipeline call per batch and
# seed. A prompt's dump does not depend on its batch mates: its initial noise (and, for
# ancestral samplers such as IF's DDPM, its per-step noise) comes from its own CPU generator
# seeded with the seed, drawn one image at a time (diffusers takes a list of generators, one
# per image; the prompt's ``num_samples`` entries are the same generator object). The same
# prompt measured alone or in any batch therefore gets the same noise; its dump differs at most
# by the rounding of batched kernels (the tests bound it at 1e-5 relative). Every prompt of a
# batch gets the same noise: prompts are compared under common random numbers.

DEFAULT_BATCH_PROMPTS = 8
"""Prompts per pipeline call when the caller gives no ``batch_prompts`` (the schema's default)."""


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    size = int(size)
    if size < 1:
        raise ValueError(f"batch_prompts must be >= 1, got {size}")
    for i in range(0, len(items), size):
        yield items[i : i + size]


def prompt_generators(num_prompts: int, seed: int, num_samples: int) -> list[Any]:
    """The generators of one pipeline call on ``num_prompts`` prompts × ``num_samples`` images:
    per prompt a fresh CPU ``torch.Generator`` seeded with ``seed``, repeated ``num_samples``
    times (diffusers draws image i from entry i, one image at a time, so each prompt's noise is
    a function of the seed alone, whatever its batch)."""
    import torch

    out = []
    for _ in range(int(num_prompts)):
        g = torch.Generator("cpu").manual_seed(int(seed))
        out += [g] * int(num_samples)
    return out


def _split_result(res: Any, i: int, n: int) -> Any:
    """Images i·n … (i+1)·n − 1 of a :class:`reschrom.measure.probe.ProbeResult` (one prompt of a batch)."""
    from dataclasses import replace

    sl = slice(i * n, (i + 1) * n)
    return replace(res, energies=res.energies[:, :, sl], tensors={k: v[:, sl] for k, v in res.tensors.items()})


def _as_prompt_list(prompt: str | Sequence[str]) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else [str(p) for p in prompt]
    if not prompts:
        raise ValueError("no prompt given")
    return prompts


def iter_guidance(
    net: Any,
    prompts: Sequence[str],
    *,
    model: str,
    seeds: Sequence[int],
    num_samples: int,
    guidance_scale: float,
    num_inference_steps: int,
    resolution: int | None = None,
    kernel: int = 2,
    keep_tensors: bool = False,
    negative_prompt: str | None = None,
    batch_prompts: int = DEFAULT_BATCH_PROMPTS,
) -> Iterator[tuple[str, pd.DataFrame, list[Any]]]:
    """:func:`measure_guidance` one prompt at a time: yields ``(prompt, dump, results)`` in
    prompt order, each as soon as its batch is measured (so a shard job holds one batch)."""
    from reschrom.models.module import is_denoiser

    _check_guidance(guidance_scale, model)
    n = int(num_samples)
    run = dict(
        seeds=[int(s) for s in seeds], n=n, guidance_scale=float(guidance_scale),
        num_inference_steps=int(num_inference_steps), kernel=kernel, keep_tensors=keep_tensors,
    )
    batches = _batches(list(prompts), batch_prompts)
    if is_denoiser(net):
        if negative_prompt is not None:
            raise ValueError(
                f"model {model!r}: negative_prompt is a diffusers pipeline argument; "
                "a kind: module model's unconditional branch is its null_condition"
            )
        measured = _probe_denoiser(net, batches, **run)
    else:
        measured = _probe_pipeline(net, batches, resolution=resolution, negative_prompt=negative_prompt, **run)
    for batch, per_seed in measured:
        yield from _prompt_frames(batch, per_seed, n, model, kernel)


def _probe_pipeline(
    pipe: Any,
    batches: Iterator[Sequence[str]],
    *,
    seeds: list[int],
    n: int,
    guidance_scale: float,
    num_inference_steps: int,
    kernel: int,
    keep_tensors: bool,
    resolution: int | None,
    negative_prompt: str | None,
) -> Iterator[tuple[Sequence[str], list[tuple[int, Any]]]]:
    """The strategy for a diffusers pipeline: its own loop, one call per batch and seed, under a
    :class:`reschrom.measure.probe.GuidanceProbe` hooked through the adapter layer. Yields
    ``(batch, [(seed, ProbeResult of the batch)])``."""
    import torch

    from reschrom.measure.probe import GuidanceProbe
    from reschrom.models.adapters import PipelineAdapter

    adapter = PipelineAdapter.for_pipeline(pipe)
    kw = adapter.call_kwargs(resolution)  # with the registry entry's call (Flux: negative_prompt "")
    negative_prompt = negative_prompt if negative_prompt is not None else kw.pop("negative_prompt", None)
    kw[adapter.cfg_scale_arg] = guidance_scale  # true_cfg_scale for Flux and Qwen-Image
    for batch in batches:
        per_seed = []
        for seed in seeds:
            with torch.inference_mode(), GuidanceProbe(adapter, kernel=kernel, keep_tensors=keep_tensors) as probe:
                pipe(
                    list(batch),
                    num_inference_steps=num_inference_steps,
                    num_images_per_prompt=n,
                    negative_prompt=None if negative_prompt is None else [negative_prompt] * len(batch),
                    generator=prompt_generators(len(batch), seed, n),
                    **kw,
                )
            per_seed.append((seed, probe.result()))
        yield batch, per_seed


def _probe_denoiser(
    den: Any,
    batches: Iterator[Sequence[str]],
    *,
    seeds: list[int],
    n: int,
    guidance_scale: float,
    num_inference_steps: int,
    kernel: int,
    keep_tensors: bool,
) -> Iterator[tuple[Sequence[str], list[tuple[int, Any]]]]:
    """The strategy for a denoiser model (``kind: module``, the flow-matching toy): the project's
    DDIM (eq. 4) with CFG (eq. 5) over the model's own schedule, on ``len(batch) × n`` images
    (each prompt's x_T drawn by its own generator seeded with the seed, as
    :func:`reschrom.sampling.cfg.model_noise`, so its dump does not depend on its batch mates);
    at each step the band energies (eq. 19) of g = ε(x,t;c) − ε(x,t), ε(x,t;c) and ε(x,t) are
    accumulated on the device and moved to the host once per batch and seed. ``t`` is the
    schedule's native time (σ for EDM and flow matching), ``t_frac`` its time fraction,
    ``alpha_bar`` the VP ᾱ of the step. Yields ``(batch, [(seed, ProbeResult of the batch)])``."""
    import torch

    from reschrom.measure.probe import ProbeResult
    from reschrom.sampling.cfg import model_noise, sample_cfg
    from reschrom.theory.pyramid import band_energies

    rec: dict[str, list] = {}

    def on_step(step, t_frac, alpha_bar, x_t, eps_u, eps_c, eps_g):
        g = eps_c - eps_u
        rec["e"].append(torch.stack([band_energies(g, kernel), band_energies(eps_c, kernel), band_energies(eps_u, kernel)]))
        rec["t_frac"].append(float(t_frac))
        rec["alpha_bar"].append(float(alpha_bar))
        if keep_tensors:
            for key, v in (("x_t", x_t), ("eps_uncond", eps_u), ("eps_cond", eps_c)):
                rec[key].append(v.to(torch.float16).clone())

    for batch in batches:
        k = len(batch)
        cond = den.encode([p for p in batch for _ in range(n)])
        uncond = den.null_condition(k * n)
        per_seed = []
        for seed in seeds:
            for key in ("e", "t_frac", "alpha_bar", "x_t", "eps_uncond", "eps_cond"):
                rec[key] = []
            # each prompt's x_T from its own generator: the same as measured alone
            x_T = torch.cat([model_noise(den, n, seed, den.device) for _ in range(k)])
            sample_cfg(
                den, [cond], uncond, guidance_scale=guidance_scale,
                num_inference_steps=num_inference_steps, x_T=x_T, on_step=on_step,
            )
            frac = np.asarray(rec["t_frac"])
            tensors = {key: torch.stack(rec[key]).cpu() for key in ("x_t", "eps_uncond", "eps_cond")} if keep_tensors else {}
            t_native = np.asarray(den.schedule.native_t(frac), dtype=np.float64)
            res = ProbeResult(
                t_native,
                torch.stack(rec["e"]).to("cpu", torch.float64).numpy(),
                tensors,
                alpha_bar=np.asarray(rec["alpha_bar"], dtype=np.float64),
                t_frac=frac,
                t_native=t_native,
                resolution=int(den.resolution),
            )
            per_seed.append((seed, res))
        yield batch, per_seed


def _prompt_frames(
    batch: Sequence[str], per_seed: list[tuple[int, Any]], n: int, model: str, kernel: int
) -> Iterator[tuple[str, pd.DataFrame, list[Any]]]:
    """Split each seed's batched ProbeResult into its prompts (``n`` samples each) and build
    every prompt's dump rows: (prompt, table, per-seed results)."""
    from reschrom.measure.probe import guidance_frame

    for i, prompt in enumerate(batch):
        results = [_split_result(res, i, n) for _, res in per_seed]
        warn_undefined(
            np.concatenate([r.defined() for r in results], axis=1), f"model {model!r}, prompt {prompt!r}", stacklevel=4
        )
        frames = [
            guidance_frame(
                r, model=model, prompt_id=prompt_id(prompt), prompt=prompt, seed=seed, kernel=kernel,
                resolution=r.resolution,
            )
            for (seed, _), r in zip(per_seed, results)
        ]
        yield prompt, pd.concat(frames, ignore_index=True), results


def measure_guidance(
    net: Any,
    prompt: str | Sequence[str],
    *,
    model: str,
    seeds: Sequence[int],
    num_samples: int,
    guidance_scale: float,
    num_inference_steps: int,
    resolution: int | None = None,
    kernel: int = 2,
    keep_tensors: bool = False,
    negative_prompt: str | None = None,
    batch_prompts: int = DEFAULT_BATCH_PROMPTS,
) -> tuple[pd.DataFrame, list[Any]]:
    """Measure the CFG term of any model of the registry on one prompt or a list; rows of the dump contract.

    ``net`` is what :func:`reschrom.models.registry.load_model` returns, dispatched by
    :func:`reschrom.models.module.is_denoiser`:

    * a diffusers CFG pipeline of any family the adapter layer knows
      (:mod:`reschrom.models.adapters`: IF, SD ε and v-prediction, SD3-style flow transformers,
      the oracle) runs its own loop under a :class:`reschrom.measure.probe.GuidanceProbe`, which
      records the CFG term in ε units (eq. 19) and ᾱ per step and leaves the pipeline's images
      bitwise unchanged; one pipeline call per batch of ``batch_prompts`` prompts and seed
      (``num_images_per_prompt = num_samples``), with the generators of
      :func:`prompt_generators` (CPU generators: the dump is reproducible on any device);
      ``resolution`` and ``negative_prompt`` are passed to it;
    * a :class:`reschrom.models.module.ModuleModel` (``kind: module``, the flow-matching toy) is
      sampled by the project's DDIM (eq. 4) with CFG (eq. 5) over its own schedule at its own
      resolution (``resolution`` is not used; ``negative_prompt`` is refused), each prompt's x_T
      from its own generator (:func:`reschrom.sampling.cfg.model_noise`); ``t`` is the
      schedule's native time (σ for EDM and flow matching).

    Either way a prompt's dump does not depend on its batch mates. Returns the table
    (``reschrom.measure.guidance.GUIDANCE_COLUMNS`` plus ``alpha_bar``; prompts in order) and the
    ProbeResults, one per (prompt, seed), prompt-major.
    """
    frames, results = [], []
    for _, df, res in iter_guidance(
        net, _as_prompt_list(prompt), model=model, seeds=seeds, num_samples=num_samples,
        guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, resolution=resolution,
        kernel=kernel, keep_tensors=keep_tensors, negative_prompt=negative_prompt, batch_prompts=batch_prompts,
    ):
        frames.append(df)
        results += res
    return pd.concat(frames, ignore_index=True), results


def _check_guidance(guidance_scale: float, model: str) -> None:
    if guidance_scale <= 1.0:
        raise ValueError(f"model {model!r}: guidance_scale {guidance_scale} must be > 1: the probe measures the CFG term")


def _measure_settings(settings: Mapping[str, Any], model: str, kernel: int, keep_tensors: bool) -> dict[str, Any]:
    """The keywords of :func:`iter_guidance` from a stage's ``settings``."""
    return dict(
        model=model,
        seeds=settings["seeds"],
        num_samples=int(settings["num_samples"]),
        guidance_scale=float(settings["guidance_scale"]),
        num_inference_steps=int(settings["num_inference_steps"]),
        resolution=settings.get("resolution"),
        kernel=kernel,
        keep_tensors=keep_tensors,
        batch_prompts=int(settings.get("batch_prompts", DEFAULT_BATCH_PROMPTS)),
    )


def _load_for_measurement(model_spec: Mapping[str, Any], settings: Mapping[str, Any], device: str, threads: int | None) -> Any:
    import torch

    from reschrom.models.registry import load_model

    if threads:
        torch.set_num_threads(int(threads))
    return load_model(model_spec, device, resolution=settings.get("resolution"), sampler=settings.get("sampler", "default"))


def write_guidance_dump(
    model_spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    prompt: str,
    out: str | os.PathLike | None,
    *,
    model: str,
    device: str = "auto",
    kernel: int = 2,
    threads: int | None = None,
    tensors_out: str | os.PathLike | None = None,
) -> None:
    """Rule entry point of one prompt: load registry model ``model_spec``
    (:func:`reschrom.models.registry.load_model`), probe it on ``prompt`` with the stage ``settings``,
    write the dump atomically.

    ``out`` None skips the Parquet dump (the tensor-only rule). ``tensors_out`` (optional) also
    writes the float16 x_t, ε_uncond, ε_cond of every step (safetensors, seeds concatenated
    along the sample axis). Nothing is written if the model fails its contract.
    """
    import torch

    from reschrom.io import write_parquet
    from reschrom.measure.probe import ProbeResult, save_tensors

    net = _load_for_measurement(model_spec, settings, device, threads)
    ((_, df, results),) = list(iter_guidance(net, [prompt], **_measure_settings(settings, model, kernel, tensors_out is not None)))
    if out is not None:
        write_parquet(df, out)
    if tensors_out is not None:
        first = results[0]
        merged = ProbeResult(
            first.timesteps,
            np.concatenate([r.energies for r in results], axis=2),
            {k: torch.cat([r.tensors[k] for r in results], dim=1) for k in first.tensors},
            alpha_bar=first.alpha_bar,
            t_frac=first.t_frac,
            t_native=first.t_native,
            resolution=first.resolution,
        )
        save_tensors(merged, tensors_out)


def write_guidance_shard(
    model_spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    prompts: Mapping[str, str],
    outs: Sequence[str | os.PathLike],
    *,
    model: str,
    device: str = "auto",
    kernel: int = 2,
    threads: int | None = None,
) -> None:
    """Rule entry point of a shard (:func:`assign_shards`): load the model once and write the
    dump of every prompt of ``prompts`` ({prompt_id: prompt}) to the file of ``outs`` named
    ``<prompt_id>.parquet``, each atomically as soon as its batch (``settings['batch_prompts']``
    prompts) is measured. The dumps are those :func:`write_guidance_dump` writes one by one."""
    from reschrom.io import write_parquet

    by_id = {Path(o).name.removesuffix(".parquet"): o for o in outs}
    if set(by_id) != set(prompts):
        missing = sorted(set(prompts) ^ set(by_id))
        raise ValueError(f"shard of model {model!r}: outputs and prompts differ ({', '.join(missing[:3])} …)")
    net = _load_for_measurement(model_spec, settings, device, threads)
    texts = list(prompts.values())
    ids = list(prompts)
    for i, (prompt, df, _) in enumerate(iter_guidance(net, texts, **_measure_settings(settings, model, kernel, False))):
        assert prompt == texts[i]
        write_parquet(df, by_id[ids[i]])
