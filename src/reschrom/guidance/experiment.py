"""The guidance experiment: every method over its scales, same NFE and seeds, per model.

For one registry model and the stage settings (``guidance_design`` of the config, with
``overrides.<model>``), every setting of every method (:data:`reschrom.guidance.rules.METHODS`)
samples the same prompts from the same initial noise with the same number of denoiser
evaluations (one batched [uncond, cond] call per step, whatever the rule), and each
(seed, prompt) gets one row of :data:`DESIGN_COLUMNS`:

* ``accuracy_colour``, ``accuracy_shape`` — share of the prompt's samples whose colour / shape,
  read by the shapes generator's detector (:func:`reschrom.data.shapes.classify_shapes`), is the
  caption's (NaN where the prompt names none, and for the oracle);
* ``accuracy_concept`` — the oracle only: share of samples whose most likely concept under the
  oracle's exact clean likelihood is one the prompt names (NaN for other models);
* ``accuracy`` — the mean of colour and shape accuracy (the toys), or ``accuracy_concept``;
* ``diversity`` (``diversity_coarse``) — mean pairwise RMS distance between the prompt's samples
  (pooled to 4×4), over the same of the held-out data;
* ``lsd_db`` — log-spectral distance (dB) of the samples' mean RAPSD to the held-out data's;
* ``pixel_std``, ``clip_fraction`` — saturation: pixel standard deviation (clamped samples) and
  the share of values at or beyond ±1 before clamping.

Held-out data: the test split at the model's resolution (the toys), or exact draws of the
oracle's data model restricted to the prompt's concepts. The applied guidance term ε̃ − ε_u of
every step is recorded (:class:`reschrom.guidance.apply.RecordingRule`): its band shares
against the theory r_m(t) of the model's schedule go to a second table
(:data:`CHROMATOGRAPHY_COLUMNS`). :func:`summarise` gives per-setting means with bootstrap
intervals over prompts.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

DESIGN_COLUMNS = [
    "model", "method", "setting", "scale", "nfe", "seed", "prompt_id", "prompt",
    "accuracy_colour", "accuracy_shape", "accuracy_concept", "accuracy",
    "diversity", "diversity_coarse", "lsd_db", "pixel_std", "clip_fraction",
]
"""Columns of ``results/guidance_design/{model}.parquet``: one row per (setting, seed, prompt)."""

CHROMATOGRAPHY_COLUMNS = [
    "model", "method", "setting", "scale", "step", "t_frac", "m", "resolution", "r_applied", "r_theory",
]
"""Columns of ``results/guidance_design/{model}_chromatography.parquet``: per (setting, step, m)."""

from reschrom.guidance.settings import (  # noqa: F401,E402
    check_methods,
    expand_settings,
    model_num_levels,
    scale_value,
    setting_label,
)
from reschrom.guidance.summary import METRICS, summarise  # noqa: F401,E402 (re-exported)

# --------------------------------------------------------------------------------------
# sampling one setting
# --------------------------------------------------------------------------------------


def _sample_pipeline(pipe: Any, rule: Any, prompts: list[str], steps: int, seed: int) -> torch.Tensor:
    from reschrom.guidance.apply import GuidedPipeline

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    kw: dict[str, Any] = {}
    if "clean_caption" in inspect.signature(pipe.__call__).parameters:
        kw["clean_caption"] = False
    out = GuidedPipeline(pipe, rule)(prompt=prompts, num_inference_steps=int(steps), generator=gen, output_type="pt", **kw)
    return out.images.double().cpu()


def _sample_denoiser(den: Any, rule: Any, prompts: list[str], steps: int, seed: int) -> torch.Tensor:
    from reschrom.guidance.apply import denoiser_guide
    from reschrom.sampling.cfg import model_noise, sample_cfg

    x_T = model_noise(den, len(prompts), int(seed), den.device)
    x0 = sample_cfg(
        den, [den.encode(prompts)], den.null_condition(len(prompts)), guidance_scale=1.0,
        num_inference_steps=int(steps), x_T=x_T, guide=denoiser_guide(rule, int(steps)),
    )
    return x0.double().cpu()


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------


def _pairwise(x: torch.Tensor) -> float:
    from reschrom.measure.metrics import mean_pairwise_distance

    return mean_pairwise_distance(x)


def _coarse(x: torch.Tensor, kernel: int) -> torch.Tensor:
    from reschrom.theory.pyramid import downsample
    from reschrom.theory.resolution import num_levels

    return downsample(x, max(0, num_levels(x.shape[-1], kernel) - 3), kernel)


def _lsd(x: torch.Tensor, data_spectrum: torch.Tensor) -> float:
    from reschrom.measure.metrics import mean_rapsd
    from reschrom.theory.spectra import log_spectral_distance

    return float(log_spectral_distance(mean_rapsd(x), data_spectrum))


def oracle_concepts(pipe: Any, x0: torch.Tensor) -> list[int]:
    """Most likely concept of each clean sample under the oracle's exact data model (ᾱ → 1)."""
    den = pipe.unet
    a = torch.full((x0.shape[0],), 1.0 - 1e-6, dtype=torch.float64)
    post = den.concept_posterior(x0.to(torch.float64), a)
    return post.argmax(1).tolist()


def _prompt_rows(
    x: torch.Tensor, prompts: list[str], n: int, *, base: dict[str, Any], reference: Mapping[str, Any],
    kernel: int, oracle: Any = None,
) -> list[dict[str, Any]]:
    from reschrom.data.shapes import caption_factors, classify_shapes
    from reschrom.measure.metrics import clip_fraction
    from reschrom.measure.prompts import prompt_id

    rows = []
    xc = x.clamp(-1.0, 1.0)
    if oracle is None:
        colours, shapes = classify_shapes(xc.float())
        concepts = None
    else:
        from reschrom.models.oracle import concept_weights

        concepts = oracle_concepts(oracle, x)
    uniq = list(dict.fromkeys(prompts))
    for p in uniq:
        idx = [i for i, q in enumerate(prompts) if q == p]
        xs, xcs = x[idx], xc[idx]
        ref = reference[p] if p in reference else reference[None]
        acc_c = acc_s = acc_k = float("nan")
        if concepts is None:
            wc, ws = caption_factors(p)
            if wc is not None:
                acc_c = float(np.mean([colours[i] == wc for i in idx]))
            if ws is not None:
                acc_s = float(np.mean([shapes[i] == ws for i in idx]))
            acc = float(np.nanmean([acc_c, acc_s])) if not (math.isnan(acc_c) and math.isnan(acc_s)) else float("nan")
        else:
            w = concept_weights(p, oracle.unet.concept_names)
            acc_k = float(np.mean([w[concepts[i]] > 0 for i in idx]))
            acc = acc_k
        rows.append({
            **base,
            "prompt_id": prompt_id(p),
            "prompt": p,
            "accuracy_colour": acc_c,
            "accuracy_shape": acc_s,
            "accuracy_concept": acc_k,
            "accuracy": acc,
            "diversity": _pairwise(xcs) / ref["pairwise"],
            "diversity_coarse": _pairwise(_coarse(xcs, kernel)) / ref["pairwise_coarse"],
            "lsd_db": _lsd(xcs, ref["spectrum"]),
            "pixel_std": float(xcs.std()),
            "clip_fraction": clip_fraction(xs),
        })
    return rows


def _reference(data: torch.Tensor, kernel: int) -> dict[str, Any]:
    from reschrom.measure.metrics import mean_rapsd

    d = data.double().clamp(-1, 1)
    return {"pairwise": _pairwise(d), "pairwise_coarse": _pairwise(_coarse(d, kernel)), "spectrum": mean_rapsd(d)}


# --------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------


def guidance_sweep(
    net: Any,
    prompts: Sequence[str],
    methods: Sequence[Mapping[str, Any]],
    *,
    model: str,
    reference: Mapping[str | None, Mapping[str, Any]],
    num_samples: int,
    seeds: Sequence[int],
    num_inference_steps: int,
    kernel: int = 2,
    oracle: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of :data:`DESIGN_COLUMNS`, rows of :data:`CHROMATOGRAPHY_COLUMNS`) of every
    setting of ``methods`` on ``net`` (a pipeline of the adapter layer, or a denoiser model).

    Each seed samples ``num_samples`` images of every prompt in one batch, from the same
    initial noise for every setting. ``reference``: per prompt (or ``None`` for all) the
    held-out data's pairwise distances and mean RAPSD (:func:`_reference`).
    """
    from reschrom.guidance.apply import RecordingRule
    from reschrom.guidance.rules import make_rule
    from reschrom.models.module import ModuleModel
    from reschrom.theory.resolution import chromatography, level_resolutions, num_levels

    is_den = isinstance(net, ModuleModel)
    if is_den:
        schedule, R = net.schedule, int(net.resolution)
    else:
        from reschrom.models.adapters import PipelineAdapter

        ad = PipelineAdapter.for_pipeline(net)
        schedule, R = ad.schedule(name=model), int(ad.resolution)
    M = num_levels(R, kernel)
    res = level_resolutions(R, kernel)
    batch_prompts = [p for p in prompts for _ in range(int(num_samples))]
    rows, chrom_rows = [], []
    for entry, scale in expand_settings(methods):
        params = {k: v for k, v in entry.items() if k not in ("method", "scales")}
        label = setting_label(entry)
        for seed in seeds:
            rule = make_rule(entry["method"], scale, schedule=schedule, kernel=kernel, **params)
            rec = RecordingRule(rule, kernel)
            if is_den:
                x = _sample_denoiser(net, rec, batch_prompts, num_inference_steps, seed)
            else:
                x = _sample_pipeline(net, rec, batch_prompts, num_inference_steps, seed)
            base = {"model": model, "method": entry["method"], "setting": label, "scale": scale_value(scale),
                    "nfe": 2 * int(num_inference_steps), "seed": int(seed)}
            rows += _prompt_rows(x, batch_prompts, int(num_samples), base=base, reference=reference,
                                 kernel=kernel, oracle=net if oracle else None)
            for step, t_frac, e in rec.records:
                tot = float(e.sum())
                r_th = chromatography(schedule, float(np.clip(t_frac, 0, 1)), M, kernel)
                for m in range(M):
                    chrom_rows.append({
                        "model": model, "method": entry["method"], "setting": label, "scale": scale_value(scale),
                        "seed": int(seed), "step": int(step), "t_frac": float(t_frac), "m": m, "resolution": int(res[m]),
                        "r_applied": float(e[m]) / tot if tot > 0 else float("nan"), "r_theory": float(r_th[m]),
                    })
    df = pd.DataFrame(rows, columns=DESIGN_COLUMNS)
    ch = pd.DataFrame(chrom_rows, columns=["model", "method", "setting", "scale", "seed", "step", "t_frac", "m",
                                           "resolution", "r_applied", "r_theory"])
    ch = ch.groupby(["model", "method", "setting", "scale", "step", "m"], as_index=False, sort=False).agg(
        t_frac=("t_frac", "first"), resolution=("resolution", "first"), r_applied=("r_applied", "mean"),
        r_theory=("r_theory", "first"),
    )[CHROMATOGRAPHY_COLUMNS]
    return df, ch


# --------------------------------------------------------------------------------------
# rule glue
# --------------------------------------------------------------------------------------


def _toy_reference(data_path: str, resolution: int, kernel: int, limit: int = 512) -> dict[str | None, Any]:
    from reschrom.data.dataset import load_level
    from reschrom.theory.pyramid import downsample

    d = load_level(data_path)[:limit].double()
    while d.shape[-1] > resolution:
        d = downsample(d, 1, kernel)
    return {None: _reference(d, kernel)}


def _oracle_reference(pipe: Any, prompts: Sequence[str], kernel: int, n: int, seed: int) -> dict[str | None, Any]:
    from reschrom.models.oracle import concept_weights

    ref: dict[str | None, Any] = {}
    for i, p in enumerate(prompts):
        g = torch.Generator().manual_seed(int(seed) + 7919 * (i + 1))
        x = pipe.unet.sample_x0(n, generator=g, weights=concept_weights(p, pipe.unet.concept_names))
        ref[p] = _reference(x.cpu(), kernel)
    return ref


def run_guidance_design(
    model_spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    model: str,
    out: str,
    chromatography_out: str,
    data_path: str | None = None,
    kernel: int = 2,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """Rule glue: load registry model ``model_spec``, sweep ``settings["methods"]`` over
    ``settings["prompts"]`` and write the two tables (module docstring). ``data_path``: the
    held-out split's level-0 images (the toys); the oracle draws its own."""
    from reschrom.io import write_parquet
    from reschrom.models.registry import load_model
    from reschrom.theory.resolution import num_levels

    if threads:
        torch.set_num_threads(int(threads))
    is_oracle = model_spec.get("kind") == "oracle"
    net = load_model(model_spec, device, resolution=settings.get("resolution"), sampler=settings.get("sampler", "ddim"))
    if hasattr(net, "set_progress_bar_config"):
        net.set_progress_bar_config(disable=True)
    if is_oracle:
        R = int(net.unet.config.sample_size)
    elif hasattr(net, "resolution") and not hasattr(net, "unet"):
        R = int(net.resolution)
    else:
        from reschrom.models.adapters import PipelineAdapter

        R = int(PipelineAdapter.for_pipeline(net).resolution)
    check_methods(settings["methods"], num_levels(R, kernel), f"guidance_design.methods ({model})")
    prompts = list(settings["prompts"])
    seeds = list(settings.get("seeds", [0]))
    if is_oracle:
        reference = _oracle_reference(net, prompts, kernel, int(settings.get("num_reference", 256)), seeds[0])
    else:
        if data_path is None:
            raise ValueError(f"model {model!r}: the guidance experiment needs held-out data (data_path)")
        reference = _toy_reference(data_path, R, kernel)
    df, ch = guidance_sweep(
        net, prompts, settings["methods"], model=model, reference=reference,
        num_samples=int(settings["num_samples"]), seeds=seeds,
        num_inference_steps=int(settings["num_inference_steps"]), kernel=kernel, oracle=is_oracle,
    )
    write_parquet(ch, chromatography_out)
    write_parquet(df, out)
