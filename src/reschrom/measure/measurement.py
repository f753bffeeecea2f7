"""Measured resolution chromatography of CFG (paper §4.1, eq. 19): dumps, aggregation, agreement.

* Prompts: :func:`prompt_id` gives every prompt text a stable, file-name-safe id (a readable
  slug plus a hash of the exact text); :func:`read_prompts` reads a list or a prompts file,
  :func:`read_prompt_suite` the same with ids and categories.
* Shards: :func:`assign_shards` groups a model's prompts into jobs of at most ``shard_size``
  prompts by a stable hash trie of their ids, so that adding a prompt changes one shard only.
* Dumps: :func:`measure_guidance` runs a CFG pipeline on a list of prompts, ``batch_prompts``
  per call, under a :class:`reschrom.probe.GuidanceProbe` and returns the per-(sample, step, m)
  band energies of the CFG term g = ε(x,t;c) − ε(x,t) (:func:`measure_guidance_denoiser` for
  denoiser models); each prompt draws its noise from its own generator, so its dump does not
  depend on its batch. :func:`write_guidance_shard` is the rule entry point of a shard (one
  ``results/guidance/{model}/{prompt_id}.parquet`` per prompt), :func:`write_guidance_dump`
  that of one prompt (with the optional tensors).
* Aggregation: :func:`stack_prompt_tables` reads the dumps one at a time and keeps each
  prompt's r̃_m(t) (eq. 19, mean over its samples; T·M numbers); :func:`aggregate_chromatography`
  averages them over prompts, joins the theory r_m(t) (eq. 18 via Theorem 1, from the recorded
  ᾱ_t of the model's own scheduler) and adds a 95 % percentile bootstrap interval over prompts;
  :func:`category_table` does the same per prompt category.
* Agreement: :func:`agreement_table` — per level the peak time of r̃ and of r and their
  difference, the Spearman rank correlation of the peak order across levels, and the mean and
  max Jensen–Shannon divergence between r̃(·|t) and r(·|t) over t, each with its bootstrap interval.

This module imports torch and diffusers lazily: the prompt and shard helpers run at DAG-planning time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------

GUIDANCE_COLUMNS = [
    "model",
    "prompt_id",
    "prompt",
    "seed",
    "sample",
    "step",
    "t",
    "t_frac",
    "m",
    "resolution",
    "energy_guidance",
    "energy_cond",
    "energy_uncond",
]
"""The contract of ``results/guidance/{model}/{prompt_id}.parquet`` (docs/DESIGN.md); the
extra column ``alpha_bar`` follows. The one definition of the dump columns."""

UNDEFINED_RATIO = 1e-12
"""r̃(t) is undefined (NaN) where ‖g‖² ≤ this × ‖ε_cond‖²: g is then rounding noise
(e.g. the oracle after its concept posterior has collapsed, where exactly g = 0)."""


class UndefinedStepsWarning(UserWarning):
    """A measurement in which the CFG term vanishes at some steps, where r̃ (eq. 19) is undefined."""


def warn_undefined(defined: np.ndarray, what: str, stacklevel: int = 3) -> int:
    """Warn (:class:`UndefinedStepsWarning`, one line naming ``what``) when ``defined``
    ((steps, samples) bool, False where the CFG term is zero) has undefined entries; returns
    their number (0: no warning)."""
    d = np.asarray(defined, dtype=bool)
    d = d.reshape(d.shape[0], -1)
    bad = int((~d).sum())
    if bad:
        S, B = d.shape
        every = int((~d).all(1).sum())
        warnings.warn(
            f"{what}: the CFG term is zero at {bad} of {S * B} (step, sample) rows "
            f"({every} of {S} steps for every sample), where r̃ (eq. 19) is undefined and its row is 0: "
            "the prompt names nothing the model tells apart, or the guidance has vanished "
            "(e.g. the oracle after its concept posterior has chosen)",
            UndefinedStepsWarning,
            stacklevel=stacklevel,
        )
    return bad


PROMPT_ID_PATTERN = r"[a-z0-9]+(?:-[a-z0-9]+)*"
"""Every prompt id matches this (a Snakemake wildcard constraint)."""


def prompt_id(text: str, max_slug: int = 40) -> str:
    """A stable, safe file name for a prompt: ``<slug>-<10 hex of sha256(text)>``.

    The slug is the text transliterated to ASCII (NFKD), lower-cased, with every run of other
    characters replaced by one ``-`` and cut to ``max_slug`` characters ("prompt" if nothing
    is left, e.g. for non-Latin scripts). The hash covers the exact UTF-8 text, so distinct
    texts get distinct ids (up to a 2^-40 collision chance) and '/', '..', quotes and
    newlines can never reach a path.
    """
    s = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", s).strip("-")[:max_slug].strip("-") or "prompt"
    digest = hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


class PromptFileError(ValueError):
    """A prompts file that cannot be read as prompts; the message is one line naming the file."""


PROMPT_FILE_SUFFIXES = (".tsv", ".csv", ".txt")


def read_prompt_table(path: str | os.PathLike) -> pd.DataFrame:
    """A prompts file as a table with a ``prompt`` column (and ``category`` when present).

    ``.tsv`` and ``.csv``: a header row naming a ``prompt`` column (case-insensitive; an optional
    ``category`` column), fields parsed with Python's csv module (quoted fields may hold the
    separator and newlines); ``.txt``: one prompt per line. Lines starting with ``#`` and blank
    prompts are skipped; order is kept, duplicates dropped (the first wins). Anything else, a
    missing ``prompt`` column, a blank category or no prompt at all raise
    :class:`PromptFileError` with one line naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise PromptFileError(f"prompt file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in PROMPT_FILE_SUFFIXES:
        raise PromptFileError(f"prompt file {p}: unknown type {suffix or '(none)'}; use .tsv or .csv with a 'prompt' column, or .txt")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PromptFileError(f"prompt file {p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if suffix == ".txt":
        rows = [ln.strip() for ln in text.splitlines()]
        df = pd.DataFrame({"prompt": [r for r in rows if r and not r.startswith("#")]})
    else:
        delim = "\t" if suffix == ".tsv" else ","
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delim) if r and not r[0].startswith("#")]
        header = [h.strip().lower() for h in rows[0]] if rows else []
        if "prompt" not in header:
            raise PromptFileError(
                f"prompt file {p}: its header {rows[0] if rows else '(empty file)'} has no 'prompt' column"
            )
        cols = {"prompt": header.index("prompt")}
        if "category" in header:
            cols["category"] = header.index("category")
        recs = []
        for i, r in enumerate(rows[1:], start=2):
            rec = {k: (r[j].strip() if k == "category" else r[j]) if j < len(r) else "" for k, j in cols.items()}
            if not rec["prompt"].strip():
                continue
            if "category" in rec and not rec["category"]:
                raise PromptFileError(f"prompt file {p}: row {i} ({rec['prompt'][:40]!r}) has an empty category")
            recs.append(rec)
        df = pd.DataFrame(recs, columns=list(cols))
    df = df.drop_duplicates("prompt", keep="first").reset_index(drop=True)
    if df.empty:
        raise PromptFileError(f"prompt file {p}: no prompt in it")
    return df


def read_prompts(spec: str | os.PathLike | Sequence[str], base: str | os.PathLike | None = None) -> list[str]:
    """Prompts from a list, or from a prompts file (:func:`read_prompt_table`; a relative path
    is taken relative to ``base`` if given). Order is kept, duplicates dropped."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if base is not None and not p.is_absolute():
            p = Path(base) / p
        return list(read_prompt_table(p)["prompt"])
    return list(dict.fromkeys(str(t) for t in spec))


def prompt_ids(texts: Iterable[str]) -> dict[str, str]:
    """{prompt_id: prompt} for a list of prompts (in order)."""
    return {prompt_id(t): t for t in texts}


DEFAULT_CATEGORY = "all"
"""The category of prompts given without one (a list, a .txt file, a table without a
``category`` column)."""


def read_prompt_suite(spec: str | os.PathLike | Sequence[str], base: str | os.PathLike | None = None) -> pd.DataFrame:
    """Prompts with their ids and categories: columns ``prompt_id``, ``prompt``, ``category``
    (:data:`DEFAULT_CATEGORY` where the source has none), in order, duplicates dropped."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if base is not None and not p.is_absolute():
            p = Path(base) / p
        df = read_prompt_table(p)
    else:
        df = pd.DataFrame({"prompt": list(dict.fromkeys(str(t) for t in spec))})
    if "category" not in df:
        df["category"] = DEFAULT_CATEGORY
    df.insert(0, "prompt_id", [prompt_id(t) for t in df["prompt"]])
    return df[["prompt_id", "prompt", "category"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------
# shards: which prompts one job measures
# --------------------------------------------------------------------------------------

SHARD_PATTERN = r"s[01]*"
"""Every shard label matches this."""

_SHARD_MAX_DEPTH = 64


def shard_bits(pid: str) -> str:
    """The first 64 bits of sha256(prompt id) as a string of 0/1: the prompt's path in the shard trie."""
    h = hashlib.sha256(str(pid).encode("utf-8")).digest()[:8]
    return format(int.from_bytes(h, "big"), "064b")


def assign_shards(ids: Iterable[str], shard_size: int) -> dict[str, list[str]]:
    """Prompts grouped into shards of at most ``shard_size`` prompts, by a rule that depends on
    each prompt and the set, never on positions or on how many prompts there are.

    The shards are the leaves of a binary trie over the hash bits of each prompt id
    (:func:`shard_bits`): a node holding more than ``shard_size`` prompts splits by the next
    bit, a node holding at most ``shard_size`` is a shard, labelled ``s`` + its bit prefix
    (``s`` alone: every prompt in one shard). Hence adding one prompt changes the prompt set of
    exactly one shard, the one whose prefix it falls under (or creates a new shard where no
    prompt was); only when that shard was already full does it split into its children, which
    together hold exactly its old prompts and the new one. In both cases the dumps that rerun
    are those of one old shard. Removing a prompt likewise touches one shard (or merges a full
    parent back). With hashing, a shard holds between ~shard_size/2 and shard_size prompts on
    average (about 0.7·shard_size). Within a shard, prompts keep their input order.
    """
    size = int(shard_size)
    if size < 1:
        raise ValueError(f"shard_size must be >= 1, got {size}")
    ids = list(dict.fromkeys(ids))
    bits = {i: shard_bits(i) for i in ids}
    out: dict[str, list[str]] = {}

    def split(prefix: str, members: list[str]) -> None:
        if len(members) <= size or len(prefix) >= _SHARD_MAX_DEPTH:
            out["s" + prefix] = members
            return
        d = len(prefix)
        for b in "01":
            sub = [i for i in members if bits[i][d] == b]
            if sub:
                split(prefix + b, sub)

    if ids:
        split("", ids)
    return dict(sorted(out.items()))


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
    """Images i·n … (i+1)·n − 1 of a :class:`reschrom.probe.ProbeResult` (one prompt of a batch)."""
    from dataclasses import replace

    sl = slice(i * n, (i + 1) * n)
    return replace(res, energies=res.energies[:, :, sl], tensors={k: v[:, sl] for k, v in res.tensors.items()})


def _as_prompt_list(prompt: str | Sequence[str]) -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else [str(p) for p in prompt]
    if not prompts:
        raise ValueError("no prompt given")
    return prompts


def iter_guidance(
    pipe: Any,
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
    import torch

    from reschrom.adapters import PipelineAdapter
    from reschrom.probe import GuidanceProbe

    _check_guidance(guidance_scale, model)
    adapter = PipelineAdapter.for_pipeline(pipe)
    kw = adapter.call_kwargs(resolution)
    n = int(num_samples)
    for batch in _batches(list(prompts), batch_prompts):
        per_seed = []
        for seed in seeds:
            with torch.inference_mode(), GuidanceProbe(adapter, kernel=kernel, keep_tensors=keep_tensors) as probe:
                pipe(
                    list(batch),
                    num_inference_steps=int(num_inference_steps),
                    guidance_scale=float(guidance_scale),
                    num_images_per_prompt=n,
                    negative_prompt=None if negative_prompt is None else [negative_prompt] * len(batch),
                    generator=prompt_generators(len(batch), int(seed), n),
                    **kw,
                )
            per_seed.append((int(seed), probe.result()))
        yield from _prompt_frames(batch, per_seed, n, model, kernel)


def _prompt_frames(
    batch: Sequence[str], per_seed: list[tuple[int, Any]], n: int, model: str, kernel: int
) -> Iterator[tuple[str, pd.DataFrame, list[Any]]]:
    """Split each seed's batched ProbeResult into its prompts (``n`` samples each) and build
    every prompt's dump rows: (prompt, table, per-seed results)."""
    from reschrom.probe import guidance_frame

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
    pipe: Any,
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
    """Run a diffusers CFG pipeline on one prompt or a list under a guidance probe; rows of the dump contract.

    Any family the adapter layer knows (:mod:`reschrom.adapters`: IF, SD ε and v-prediction,
    SD3-style flow transformers, the oracle): the probe records the CFG term in ε units
    (eq. 19) and ᾱ per step, and leaves the pipeline's images bitwise unchanged. One pipeline
    call per batch of ``batch_prompts`` prompts and seed (``num_images_per_prompt =
    num_samples``), with the generators of :func:`prompt_generators` (CPU generators: the dump
    is reproducible on any device, and a prompt's dump does not depend on its batch mates).
    Returns the table (``reschrom.probe.GUIDANCE_COLUMNS`` plus ``alpha_bar``; prompts in order)
    and the ProbeResults, one per (prompt, seed), prompt-major.
    """
    frames, results = [], []
    for _, df, res in iter_guidance(
        pipe, _as_prompt_list(prompt), model=model, seeds=seeds, num_samples=num_samples,
        guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, resolution=resolution,
        kernel=kernel, keep_tensors=keep_tensors, negative_prompt=negative_prompt, batch_prompts=batch_prompts,
    ):
        frames.append(df)
        results += res
    return pd.concat(frames, ignore_index=True), results


def _check_guidance(guidance_scale: float, model: str) -> None:
    if guidance_scale <= 1.0:
        raise ValueError(f"model {model!r}: guidance_scale {guidance_scale} must be > 1: the probe measures the CFG term")


def iter_guidance_denoiser(
    den: Any,
    prompts: Sequence[str],
    *,
    model: str,
    seeds: Sequence[int],
    num_samples: int,
    guidance_scale: float,
    num_inference_steps: int,
    kernel: int = 2,
    keep_tensors: bool = False,
    batch_prompts: int = DEFAULT_BATCH_PROMPTS,
) -> Iterator[tuple[str, pd.DataFrame, list[Any]]]:
    """:func:`measure_guidance_denoiser` one prompt at a time (``(prompt, dump, results)``)."""
    import torch

    from reschrom.denoisers import initial_noise, sample_cfg
    from reschrom.probe import ProbeResult
    from reschrom.pyramid import band_energies

    _check_guidance(guidance_scale, model)
    n = int(num_samples)
    rec: dict[str, list] = {}

    def on_step(step, t_frac, alpha_bar, x_t, eps_u, eps_c, eps_g):
        g = eps_c - eps_u
        rec["e"].append(torch.stack([band_energies(g, kernel), band_energies(eps_c, kernel), band_energies(eps_u, kernel)]))
        rec["t_frac"].append(float(t_frac))
        rec["alpha_bar"].append(float(alpha_bar))
        if keep_tensors:
            for key, v in (("x_t", x_t), ("eps_uncond", eps_u), ("eps_cond", eps_c)):
                rec[key].append(v.to(torch.float16).clone())

    for batch in _batches(list(prompts), batch_prompts):
        k = len(batch)
        cond = den.encode([p for p in batch for _ in range(n)])
        uncond = den.null_condition(k * n)
        per_seed = []
        for seed in seeds:
            for key in ("e", "t_frac", "alpha_bar", "x_t", "eps_uncond", "eps_cond"):
                rec[key] = []
            # each prompt's x_T from its own generator: the same as measured alone
            x_T = torch.cat([initial_noise(den, n, int(seed), den.device) for _ in range(k)])
            sample_cfg(
                den, [cond], uncond, guidance_scale=float(guidance_scale),
                num_inference_steps=int(num_inference_steps), x_T=x_T, on_step=on_step,
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
            per_seed.append((int(seed), res))
        yield from _prompt_frames(batch, per_seed, n, model, kernel)


def measure_guidance_denoiser(
    den: Any,
    prompt: str | Sequence[str],
    *,
    model: str,
    seeds: Sequence[int],
    num_samples: int,
    guidance_scale: float,
    num_inference_steps: int,
    kernel: int = 2,
    keep_tensors: bool = False,
    batch_prompts: int = DEFAULT_BATCH_PROMPTS,
) -> tuple[pd.DataFrame, list[Any]]:
    """The same measurement for a denoiser model (``kind: module``, the flow-matching toy):
    the project's DDIM (eq. 4) with CFG (eq. 5) over the model's own schedule, on batches of
    ``batch_prompts`` prompts × ``num_samples`` images (each prompt's x_T drawn by its own
    generator seeded with the seed, as :func:`reschrom.denoisers.initial_noise`, so its dump
    does not depend on its batch mates); at each step the band energies (eq. 19) of
    g = ε(x,t;c) − ε(x,t), ε(x,t;c) and ε(x,t) are accumulated on the device and moved to the
    host once per batch and seed. ``t`` is the schedule's native time (σ for EDM and flow
    matching), ``t_frac`` its time fraction, ``alpha_bar`` the VP ᾱ of the step.
    """
    frames, results = [], []
    for _, df, res in iter_guidance_denoiser(
        den, _as_prompt_list(prompt), model=model, seeds=seeds, num_samples=num_samples,
        guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, kernel=kernel,
        keep_tensors=keep_tensors, batch_prompts=batch_prompts,
    ):
        frames.append(df)
        results += res
    return pd.concat(frames, ignore_index=True), results


def _measure_settings(settings: Mapping[str, Any], model: str, kernel: int, keep_tensors: bool) -> dict[str, Any]:
    return dict(
        model=model,
        seeds=settings["seeds"],
        num_samples=int(settings["num_samples"]),
        guidance_scale=float(settings["guidance_scale"]),
        num_inference_steps=int(settings["num_inference_steps"]),
        kernel=kernel,
        keep_tensors=keep_tensors,
        batch_prompts=int(settings.get("batch_prompts", DEFAULT_BATCH_PROMPTS)),
    )


def _load_for_measurement(model_spec: Mapping[str, Any], settings: Mapping[str, Any], device: str, threads: int | None) -> Any:
    import torch

    from reschrom.registry import load_model

    if threads:
        torch.set_num_threads(int(threads))
    return load_model(model_spec, device, resolution=settings.get("resolution"), sampler=settings.get("sampler", "default"))


def iter_model_guidance(
    net: Any,
    model_spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    prompts: Sequence[str],
    *,
    model: str,
    kernel: int = 2,
    keep_tensors: bool = False,
) -> Iterator[tuple[str, pd.DataFrame, list[Any]]]:
    """Per-prompt dumps of a loaded registry model: a denoiser or a diffusers pipeline."""
    from reschrom.registry import is_denoiser_model

    common = _measure_settings(settings, model, kernel, keep_tensors)
    if is_denoiser_model(model_spec):
        return iter_guidance_denoiser(net, list(prompts), **common)
    return iter_guidance(net, list(prompts), resolution=settings.get("resolution"), **common)


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
    (:func:`reschrom.registry.load_model`), probe it on ``prompt`` with the stage ``settings``,
    write the dump atomically.

    ``out`` None skips the Parquet dump (the tensor-only rule). ``tensors_out`` (optional) also
    writes the float16 x_t, ε_uncond, ε_cond of every step (safetensors, seeds concatenated
    along the sample axis). Nothing is written if the model fails its contract.
    """
    import torch

    from reschrom.io import write_parquet
    from reschrom.probe import ProbeResult, save_tensors

    net = _load_for_measurement(model_spec, settings, device, threads)
    ((_, df, results),) = list(
        iter_model_guidance(net, model_spec, settings, [prompt], model=model, kernel=kernel, keep_tensors=tensors_out is not None)
    )
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
    for i, (prompt, df, _) in enumerate(iter_model_guidance(net, model_spec, settings, texts, model=model, kernel=kernel)):
        assert prompt == texts[i]
        write_parquet(df, by_id[ids[i]])


# --------------------------------------------------------------------------------------
# aggregation (streaming over the dumps)
# --------------------------------------------------------------------------------------

_DUMP_COLUMNS = [c for c in GUIDANCE_COLUMNS if c not in ("model", "t")] + ["alpha_bar"]
"""What aggregation reads of a dump."""


def _read_dump(path: str | os.PathLike) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reschrom.io import CorruptFileError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"guidance dump not found: {p}")
    try:
        pf = pq.ParquetFile(p)
        cols = [c for c in _DUMP_COLUMNS if c in pf.schema_arrow.names]
        return pf.read(columns=cols).to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise CorruptFileError(f"corrupt Parquet file {p}: {e}") from None


def prompt_chromatography(df: pd.DataFrame, undefined_ratio: float = UNDEFINED_RATIO) -> pd.DataFrame:
    """One prompt's dump → one row per (t_frac, m): r̃ (eq. 19) per sample, then the mean over samples.

    Columns t_frac, m, resolution, alpha_bar, r_measured (mean over the samples where r̃ is
    defined), n_samples (how many), norm_guidance/norm_cond/norm_uncond (mean ‖·‖ over samples).
    """
    key = ["seed", "sample", "step"]
    tot = df.groupby(key, sort=False)[["energy_guidance", "energy_cond", "energy_uncond"]].transform("sum")
    defined = tot["energy_guidance"] > undefined_ratio * tot["energy_cond"]
    d = df.assign(
        r=np.where(defined, df["energy_guidance"] / tot["energy_guidance"].where(defined, 1.0), np.nan),
        ng=np.sqrt(tot["energy_guidance"]),
        nc=np.sqrt(tot["energy_cond"]),
        nu=np.sqrt(tot["energy_uncond"]),
    )
    if "alpha_bar" not in d:
        d["alpha_bar"] = np.nan
    g = d.groupby(["t_frac", "m"], sort=True)
    out = g.agg(
        resolution=("resolution", "first"),
        alpha_bar=("alpha_bar", "first"),
        r_measured=("r", "mean"),
        n_samples=("r", "count"),
        norm_guidance=("ng", "mean"),
        norm_cond=("nc", "mean"),
        norm_uncond=("nu", "mean"),
    ).reset_index()
    return out


CHROMATOGRAPHY_COLUMNS = ["t_frac", "m", "resolution", "r_measured", "r_measured_std", "n_prompts", "r_theory"]
"""The contract of ``results/chromatography/{model}.parquet`` (docs/DESIGN.md); extra columns follow."""

INTERVAL_COLUMNS = ["r_measured_lo", "r_measured_hi"]
"""The bootstrap interval of ``r_measured`` (95 %, over prompts), right after the contract."""

CATEGORY_COLUMNS = ["category", *CHROMATOGRAPHY_COLUMNS, *INTERVAL_COLUMNS]
"""The columns of ``results/chromatography/{model}_categories.parquet``."""

CONFIDENCE = 0.95
"""Coverage of every bootstrap interval (percentile bootstrap over prompts)."""


def theory_for_alpha_bar(alpha_bar: np.ndarray, num_levels: int, kernel: int = 2) -> np.ndarray:
    """r_m at the recorded ᾱ_t (eq. 18 by Theorem 1, eq. 34–35: r_m(t) = r*_m(-ln ᾱ_t)), (N, M)."""
    from reschrom.theory import chromatography_natural

    with np.errstate(divide="ignore"):
        s = -np.log(np.clip(np.asarray(alpha_bar, dtype=np.float64), 0.0, 1.0))
    return chromatography_natural(s, num_levels, kernel)


@dataclass
class PromptStack:
    """Every prompt's r̃_m(t) (eq. 19, mean over its samples) on one (t_frac, m) grid, in memory.

    ``r`` (P, T, M) is NaN where r̃ is undefined for that prompt; ``t_frac`` (T,) ascending,
    ``m`` (M,) ascending, ``resolution`` (M,), ``alpha_bar`` (T,) of the first prompt;
    ``norms`` (T, M, 3) the sums over prompts of the mean ‖g‖, ‖ε_cond‖, ‖ε_uncond‖.
    One prompt costs T·M floats: the dumps themselves are read one at a time.
    """

    prompt_ids: list[str]
    t_frac: np.ndarray
    m: np.ndarray
    resolution: np.ndarray
    alpha_bar: np.ndarray
    r: np.ndarray
    norms: np.ndarray

    def subset(self, idx: Sequence[int]) -> PromptStack:
        idx = np.asarray(idx, dtype=np.int64)
        return replace(self, prompt_ids=[self.prompt_ids[i] for i in idx], r=self.r[idx], norms=None)  # type: ignore[arg-type]


def stack_prompt_tables(dumps: Sequence[str | os.PathLike], undefined_ratio: float = UNDEFINED_RATIO) -> PromptStack:
    """Read the dumps one by one, reduce each to its per-prompt table (:func:`prompt_chromatography`)
    and stack the tables (:class:`PromptStack`). All dumps must share one (t_frac, m) grid."""
    if not dumps:
        raise ValueError("aggregate_chromatography: no guidance dumps given")
    index = None
    rs, ids = [], []
    norms = None
    first = None
    for path in dumps:
        df = _read_dump(path)
        pid = str(df["prompt_id"].iloc[0]) if "prompt_id" in df and len(df) else Path(path).stem
        per = prompt_chromatography(df, undefined_ratio)
        if index is None:
            index = pd.MultiIndex.from_frame(per[["t_frac", "m"]])
            first = per
        elif not index.equals(pd.MultiIndex.from_frame(per[["t_frac", "m"]])):
            raise ValueError(
                f"guidance dump {path}: its (t_frac, m) grid differs from the first dump's "
                "(different num_inference_steps or resolution?)"
            )
        T, M = len(index.levels[0]), len(index.levels[1])
        if T * M != len(per):
            raise ValueError(f"guidance dump {path}: an incomplete (t_frac, m) grid")
        rs.append(per["r_measured"].to_numpy(np.float64).reshape(T, M))
        nm = per[["norm_guidance", "norm_cond", "norm_uncond"]].to_numpy(np.float64).reshape(T, M, 3)
        norms = nm if norms is None else norms + nm
        ids.append(pid)
    assert first is not None and norms is not None
    T, M = rs[0].shape
    return PromptStack(
        prompt_ids=ids,
        t_frac=first["t_frac"].to_numpy(np.float64).reshape(T, M)[:, 0],
        m=first["m"].to_numpy().reshape(T, M)[0].astype(np.int64),
        resolution=first["resolution"].to_numpy().reshape(T, M)[0].astype(np.int64),
        alpha_bar=first["alpha_bar"].to_numpy(np.float64).reshape(T, M)[:, 0],
        r=np.stack(rs),
        norms=norms,
    )


def _boot_rng(seed: int, label: str) -> np.random.Generator:
    """The bootstrap's generator: a function of the run's seed and the label (a category) only."""
    key = int.from_bytes(hashlib.sha256(str(label).encode("utf-8")).digest()[:4], "little")
    return np.random.default_rng([int(seed), key])


def bootstrap_means(r: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray | None:
    """Means over prompts of ``n_boot`` resamples (with replacement) of the prompts of ``r``
    (P, …; NaN = undefined, skipped as in the estimate): (n_boot, …). None when there is nothing
    to resample (n_boot 0 or fewer than 2 prompts)."""
    P = r.shape[0]
    if n_boot <= 0 or P < 2:
        return None
    flat = r.reshape(P, -1)
    ok = ~np.isnan(flat)
    w = rng.multinomial(P, np.full(P, 1.0 / P), size=int(n_boot)).astype(np.float64)  # (B, P) counts
    num = w @ np.where(ok, flat, 0.0)
    den = w @ ok.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out.reshape(int(n_boot), *r.shape[1:])


def percentile_interval(boot: np.ndarray | None, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 95 % percentile interval of bootstrap replicates (axis 0), widened where needed so
    that it contains the estimate; NaN where the estimate or every replicate is NaN."""
    est = np.asarray(estimate, dtype=np.float64)
    if boot is None:
        nan = np.full(est.shape, np.nan)
        return nan, nan.copy()
    a = (1.0 - CONFIDENCE) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(np.asarray(boot, dtype=np.float64), [100 * a, 100 * (1 - a)], axis=0)
    bad = np.isnan(est)
    lo = np.where(bad, np.nan, np.fmin(lo, est))
    hi = np.where(bad, np.nan, np.fmax(hi, est))
    return lo, hi


def _table_from_stack(stack: PromptStack, kernel: int, boot: np.ndarray | None) -> pd.DataFrame:
    """The chromatography table (contract columns, the interval, the extras) of a stack."""
    r = stack.r
    P, T, M = r.shape
    ok = ~np.isnan(r)
    n = ok.sum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.where(n > 0, np.nansum(r, 0) / np.maximum(n, 1), np.nan)
        std = np.where(n > 1, np.nanstd(r, 0, ddof=1), np.where(n == 1, 0.0, np.nan))
    lo, hi = percentile_interval(boot, mean)
    lo = np.where(n > 1, lo, np.nan)
    hi = np.where(n > 1, hi, np.nan)
    tt, mm = np.meshgrid(stack.t_frac, stack.m, indexing="ij")
    r_th = theory_for_alpha_bar(stack.alpha_bar, int(stack.m.max()) + 1, kernel)[:, stack.m]
    out = pd.DataFrame(
        {
            "t_frac": tt.ravel(),
            "m": mm.ravel().astype(np.int32),
            "resolution": np.broadcast_to(stack.resolution, (T, M)).ravel().astype(np.int32),
            "r_measured": mean.ravel(),
            "r_measured_std": std.ravel(),
            "n_prompts": n.ravel().astype(np.int32),
            "r_theory": r_th.ravel(),
            "r_measured_lo": lo.ravel(),
            "r_measured_hi": hi.ravel(),
            "alpha_bar": np.broadcast_to(stack.alpha_bar[:, None], (T, M)).ravel(),
            # how many of the T steps have r̃ defined at every level (for at least one prompt)
            "steps_defined": np.int32((n > 0).all(-1).sum()),
            "n_steps": np.int32(T),
        }
    )
    if stack.norms is not None:
        for j, c in enumerate(("norm_guidance", "norm_cond", "norm_uncond")):
            out[c] = (stack.norms[..., j] / P).ravel()
    out = out.sort_values(["t_frac", "m"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)


def chromatography_from_stack(
    stack: PromptStack, kernel: int = 2, n_boot: int = 0, seed: int = 0, label: str = ""
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The table of :func:`aggregate_chromatography` and its bootstrap replicates
    ((n_boot, T, M), t_frac ascending, or None: see :func:`bootstrap_means`)."""
    boot = bootstrap_means(stack.r, n_boot, _boot_rng(seed, label))
    return _table_from_stack(stack, kernel, boot), boot


def aggregate_chromatography(
    dumps: Sequence[str | os.PathLike],
    kernel: int = 2,
    undefined_ratio: float = UNDEFINED_RATIO,
    n_boot: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """r̃_m(t) averaged over prompts, with its std over prompts, a bootstrap interval and the theory r_m(t).

    Streams over the dumps: each (one prompt) is read, reduced to its per-prompt table
    (:func:`prompt_chromatography`, T·M numbers) and kept as such (:class:`PromptStack`), so
    memory grows by one small table per prompt, never by a dump. ``r_measured`` is the mean
    over the prompts where r̃ is defined, ``r_measured_std`` their sample std (0 for one
    prompt), ``n_prompts`` their number. ``r_measured_lo``/``r_measured_hi``: the 95 %
    percentile bootstrap interval over prompts (``n_boot`` resamples with replacement, seeded
    by ``seed``; NaN without resamples or where fewer than two prompts are defined). Extra
    columns: alpha_bar, steps_defined (how many of the n_steps steps have r̃ defined at every
    level; an :class:`UndefinedStepsWarning` when not all), n_steps, norm_guidance, norm_cond,
    norm_uncond (means over prompts).
    """
    table = chromatography_from_stack(stack_prompt_tables(dumps, undefined_ratio), kernel, n_boot, seed)[0]
    _warn_undefined_steps(table, "aggregate_chromatography")
    return table


def _warn_undefined_steps(table: pd.DataFrame, what: str) -> None:
    """One :class:`UndefinedStepsWarning` when an aggregate table has steps without r̃."""
    if len(table) and int(table["steps_defined"].iloc[0]) < int(table["n_steps"].iloc[0]):
        warnings.warn(
            f"{what}: r̃ (eq. 19) is defined at {int(table['steps_defined'].iloc[0])} of "
            f"{int(table['n_steps'].iloc[0])} steps; at the others the CFG term is zero for every prompt",
            UndefinedStepsWarning,
            stacklevel=3,
        )


def category_table(
    stack: PromptStack,
    categories: Mapping[str, str] | None = None,
    kernel: int = 2,
    n_boot: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """The chromatography of each category of prompts: :data:`CATEGORY_COLUMNS` (and the extra
    columns), one block of rows per category in order of first appearance in ``categories``
    ({prompt_id: category}; prompts without one are in :data:`DEFAULT_CATEGORY`). Each
    category's interval resamples its own prompts, from a generator of (seed, category)."""
    cats = [str((categories or {}).get(pid, DEFAULT_CATEGORY)) for pid in stack.prompt_ids]
    order = [c for c in dict.fromkeys([*(categories or {}).values(), DEFAULT_CATEGORY]) if c in cats]
    frames = []
    for c in order:
        idx = [i for i, x in enumerate(cats) if x == c]
        table, _ = chromatography_from_stack(stack.subset(idx), kernel, n_boot, seed, label=c)
        table.insert(0, "category", c)
        table["n_category"] = np.int32(len(idx))
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------
# agreement with the theory
# --------------------------------------------------------------------------------------


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence (bits, in [0, 1]) between distributions along the last axis."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    mix = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * (np.log2(a) - np.log2(np.where(b > 0, b, 1.0))), 0.0)
        return t.sum(-1)

    return np.clip(0.5 * kl(p, mix) + 0.5 * kl(q, mix), 0.0, 1.0)


AGREEMENT_COLUMNS = [
    "model",
    "m",
    "resolution",
    "peak_t_measured",
    "peak_t_theory",
    "peak_t_diff",
    "spearman_peak_order",
    "jsd_mean",
    "jsd_max",
    "n_t",
]

AGREEMENT_INTERVALS = ["peak_t_measured", "peak_t_diff", "spearman_peak_order", "jsd_mean", "jsd_max"]
"""Agreement metrics with a bootstrap interval: columns ``<metric>_lo``, ``<metric>_hi``."""


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, ties averaged (as Spearman's ρ takes them)."""
    less = (x[..., None, :] < x[..., :, None]).sum(-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(-1)
    return less + (equal + 1) / 2.0


def _agreement_metrics(meas: np.ndarray, theo: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Agreement of K measured tables ``meas`` (K, T, M) (NaN = undefined) with ``theo`` (T, M)
    on the time grid ``t`` (T,): peak times (K, M), Spearman ρ, mean and max JSD, n_t (K,)."""
    K = meas.shape[0]
    ok = ~np.isnan(meas).any(-1)  # (K, T): steps where every level is defined
    any_ok = ok.any(-1)
    idx = np.argmax(np.where(ok[..., None], meas, -np.inf), axis=1)  # first maximum among defined steps
    pm = np.where(any_ok[:, None], t[idx], np.nan)
    pt = t[np.argmax(theo, axis=0)]
    rm, rt = _ranks(pm), _ranks(pt)
    rm = rm - rm.mean(-1, keepdims=True)
    rt = rt - rt.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rm * rt).sum(-1) / np.sqrt((rm**2).sum(-1) * (rt**2).sum())
    const = (np.ptp(pm, axis=-1) == 0) | (np.ptp(pt) == 0) | ~any_ok
    rho = np.where(const, np.nan, rho)
    jsd = np.where(ok, jensen_shannon(np.where(ok[..., None], meas, 1.0), np.broadcast_to(theo, meas.shape)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        jmean, jmax = np.nanmean(jsd, -1), np.nanmax(jsd, -1)
    return {
        "peak_t_measured": pm,
        "peak_t_theory": np.broadcast_to(pt, (K, len(pt))),
        "peak_t_diff": pm - pt,
        "spearman_peak_order": rho,
        "jsd_mean": jmean,
        "jsd_max": jmax,
        "n_t": ok.sum(-1),
    }


def agreement_table(chrom: pd.DataFrame, model: str = "", boot: np.ndarray | None = None) -> pd.DataFrame:
    """Measured vs theoretical chromatography, one row per level m.

    peak_t_measured / peak_t_theory: t_frac at which r̃_m / r_m peak on the model's step grid
    (steps where r̃ is undefined are skipped); peak_t_diff = measured − theory;
    spearman_peak_order: Spearman rank correlation of the two peak times across levels (NaN if
    either is constant); jsd_mean / jsd_max: Jensen–Shannon divergence (bits) between r̃(·|t)
    and r(·|t), mean and max over the steps where r̃ is defined (their number: n_t, of
    n_steps, the last column).

    ``boot`` (n_boot, T, M): bootstrap replicates of r̃ (t_frac ascending, m ascending, as from
    :func:`chromatography_from_stack`); each metric of :data:`AGREEMENT_INTERVALS` then gets
    its 95 % percentile interval ``<metric>_lo``/``<metric>_hi`` (NaN without replicates).
    """
    meas = chrom.pivot_table(index="t_frac", columns="m", values="r_measured", dropna=False).sort_index()
    theo = chrom.pivot_table(index="t_frac", columns="m", values="r_theory").sort_index()
    res = chrom.groupby("m")["resolution"].first()
    meas = meas.reindex(index=theo.index, columns=theo.columns)
    t = theo.index.to_numpy(np.float64)
    th = theo.to_numpy(np.float64)
    est = _agreement_metrics(meas.to_numpy(np.float64)[None], th, t)
    M = th.shape[1]
    out = pd.DataFrame(
        {
            "model": model,
            "m": theo.columns.astype(np.int32),
            "resolution": res.reindex(theo.columns).to_numpy().astype(np.int32),
            "peak_t_measured": est["peak_t_measured"][0],
            "peak_t_theory": est["peak_t_theory"][0],
            "peak_t_diff": est["peak_t_diff"][0],
            "spearman_peak_order": float(est["spearman_peak_order"][0]),
            "jsd_mean": float(est["jsd_mean"][0]),
            "jsd_max": float(est["jsd_max"][0]),
            "n_t": int(est["n_t"][0]),
        }
    )[AGREEMENT_COLUMNS]
    reps = None
    if boot is not None:
        if boot.shape[1:] != th.shape:
            raise ValueError(f"agreement_table: bootstrap replicates of shape {boot.shape[1:]}, table {th.shape}")
        reps = _agreement_metrics(np.asarray(boot, dtype=np.float64), th, t)
    for k in AGREEMENT_INTERVALS:
        e = np.broadcast_to(est[k][0], (M,)) if np.ndim(est[k][0]) == 0 else est[k][0]
        b = None if reps is None else (reps[k][:, None] if reps[k].ndim == 1 else reps[k])
        lo, hi = percentile_interval(None if b is None else np.broadcast_to(b, (b.shape[0], M)), e)
        out[f"{k}_lo"], out[f"{k}_hi"] = lo, hi
    out["n_steps"] = np.int32(len(t))  # n_t of these steps have r̃ defined at every level
    return out


def write_chromatography(
    dumps: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    agreement_out: str | os.PathLike,
    model: str,
    kernel: int = 2,
    categories_out: str | os.PathLike | None = None,
    categories: Mapping[str, str] | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> None:
    """Rule entry point: aggregate the dumps of one model (one pass over the files) and write
    its table, its agreement table and (``categories_out``) the table per category, atomically."""
    from reschrom.io import write_parquet

    stack = stack_prompt_tables(dumps)
    chrom, boot = chromatography_from_stack(stack, kernel, n_boot, seed)
    _warn_undefined_steps(chrom, f"model {model!r}")
    write_parquet(chrom, out)
    write_parquet(agreement_table(chrom, model, boot), agreement_out)
    if categories_out is not None:
        write_parquet(category_table(stack, categories, kernel, n_boot, seed), categories_out)
