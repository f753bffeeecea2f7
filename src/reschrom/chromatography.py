"""Measured resolution chromatography of CFG (paper §4.1, eq. 19): dumps, aggregation, agreement.

* Prompts: :func:`prompt_id` gives every prompt text a stable, file-name-safe id (a readable
  slug plus a hash of the exact text); :func:`read_prompts` reads a list or a TSV file.
* Dumps: :func:`measure_guidance` runs a CFG pipeline under a :class:`reschrom.probe.GuidanceProbe`
  and returns the per-(sample, step, m) band energies of the CFG term g = ε(x,t;c) − ε(x,t);
  :func:`write_guidance_dump` is the rule entry point (``results/guidance/{model}/{prompt_id}.parquet``).
* Aggregation: :func:`aggregate_chromatography` streams over the dumps, computes r̃_m(t) per
  prompt and sample (eq. 19), averages over samples and then prompts, and joins the theory
  r_m(t) (eq. 18 via Theorem 1, from the recorded ᾱ_t of the model's own scheduler).
* Agreement: :func:`agreement_table` — per level the peak time of r̃ and of r and their
  difference, the Spearman rank correlation of the peak order across levels, and the mean
  Jensen–Shannon divergence between r̃(·|t) and r(·|t) over t.

This module imports torch and diffusers lazily: the prompt helpers run at DAG-planning time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
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


# --------------------------------------------------------------------------------------
# measurement: diffusers pipelines (hooked) and denoiser models (the project's DDIM)
# --------------------------------------------------------------------------------------


def measure_guidance(
    pipe: Any,
    prompt: str,
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
) -> tuple[pd.DataFrame, list[Any]]:
    """Run a diffusers CFG pipeline on ``prompt`` under a guidance probe; rows of the dump contract.

    Any family the adapter layer knows (:mod:`reschrom.adapters`: IF, SD ε and v-prediction,
    SD3-style flow transformers, the oracle): the probe records the CFG term in ε units
    (eq. 19) and ᾱ per step, and leaves the pipeline's images bitwise unchanged. One pipeline
    call per seed (``num_images_per_prompt = num_samples``, a CPU ``torch.Generator`` seeded
    with the seed), so the dump is reproducible on any device. Returns the table
    (``reschrom.probe.GUIDANCE_COLUMNS`` plus ``alpha_bar``) and each call's ProbeResult.
    """
    import torch

    from reschrom.adapters import PipelineAdapter
    from reschrom.probe import GuidanceProbe, guidance_frame

    _check_guidance(guidance_scale, model)
    adapter = PipelineAdapter.for_pipeline(pipe)
    kw = adapter.call_kwargs(resolution)
    pid = prompt_id(prompt)
    frames, results = [], []
    for seed in seeds:
        gen = torch.Generator("cpu").manual_seed(int(seed))
        with torch.inference_mode(), GuidanceProbe(adapter, kernel=kernel, keep_tensors=keep_tensors) as probe:
            pipe(
                prompt,
                num_inference_steps=int(num_inference_steps),
                guidance_scale=float(guidance_scale),
                num_images_per_prompt=int(num_samples),
                negative_prompt=negative_prompt,
                generator=gen,
                **kw,
            )
        res = probe.result()
        results.append(res)
        frames.append(
            guidance_frame(
                res, model=model, prompt_id=pid, prompt=prompt, seed=int(seed), kernel=kernel,
                resolution=res.resolution,
            )
        )
    return pd.concat(frames, ignore_index=True), results


def _check_guidance(guidance_scale: float, model: str) -> None:
    if guidance_scale <= 1.0:
        raise ValueError(f"model {model!r}: guidance_scale {guidance_scale} must be > 1: the probe measures the CFG term")


def measure_guidance_denoiser(
    den: Any,
    prompt: str,
    *,
    model: str,
    seeds: Sequence[int],
    num_samples: int,
    guidance_scale: float,
    num_inference_steps: int,
    kernel: int = 2,
    keep_tensors: bool = False,
) -> tuple[pd.DataFrame, list[Any]]:
    """The same measurement for a denoiser model (``kind: module``, the flow-matching toy):
    the project's DDIM (eq. 4) with CFG (eq. 5) over the model's own schedule; at each step the
    band energies (eq. 19) of g = ε(x,t;c) − ε(x,t), ε(x,t;c) and ε(x,t) are accumulated on the
    device and moved to the host once per seed. ``t`` is the schedule's native time (σ for EDM
    and flow matching), ``t_frac`` its time fraction, ``alpha_bar`` the VP ᾱ of the step.
    """
    import torch

    from reschrom.denoisers import initial_noise, sample_cfg
    from reschrom.probe import ProbeResult, guidance_frame
    from reschrom.pyramid import band_energies

    _check_guidance(guidance_scale, model)
    pid = prompt_id(prompt)
    cond = den.encode([prompt] * int(num_samples))
    uncond = den.null_condition(int(num_samples))
    frames, results = [], []
    rec: dict[str, list] = {}

    def on_step(step, t_frac, alpha_bar, x_t, eps_u, eps_c, eps_g):
        g = eps_c - eps_u
        rec["e"].append(torch.stack([band_energies(g, kernel), band_energies(eps_c, kernel), band_energies(eps_u, kernel)]))
        rec["t_frac"].append(float(t_frac))
        rec["alpha_bar"].append(float(alpha_bar))
        if keep_tensors:
            for key, v in (("x_t", x_t), ("eps_uncond", eps_u), ("eps_cond", eps_c)):
                rec[key].append(v.to(torch.float16).clone())

    for seed in seeds:
        for key in ("e", "t_frac", "alpha_bar", "x_t", "eps_uncond", "eps_cond"):
            rec[key] = []
        x_T = initial_noise(den, int(num_samples), int(seed), den.device)
        sample_cfg(
            den, [cond], uncond, guidance_scale=float(guidance_scale),
            num_inference_steps=int(num_inference_steps), x_T=x_T, on_step=on_step,
        )
        frac = np.asarray(rec["t_frac"])
        abars = rec["alpha_bar"]
        energies = rec["e"]
        tensors = {k: torch.stack(rec[k]).cpu() for k in ("x_t", "eps_uncond", "eps_cond")} if keep_tensors else {}
        t_native = np.asarray(den.schedule.native_t(frac), dtype=np.float64)
        res = ProbeResult(
            t_native,
            torch.stack(energies).to("cpu", torch.float64).numpy(),
            tensors,
            alpha_bar=np.asarray(abars, dtype=np.float64),
            t_frac=frac,
            t_native=t_native,
            resolution=int(den.resolution),
        )
        results.append(res)
        frames.append(
            guidance_frame(
                res, model=model, prompt_id=pid, prompt=prompt, seed=int(seed), kernel=kernel,
                resolution=res.resolution,
            )
        )
    return pd.concat(frames, ignore_index=True), results


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
    """Rule entry point: load registry model ``model_spec`` (:func:`reschrom.registry.load_model`),
    probe it on ``prompt`` with the stage ``settings``, write the dump atomically.

    ``out`` None skips the Parquet dump (the tensor-only rule). ``tensors_out`` (optional) also
    writes the float16 x_t, ε_uncond, ε_cond of every step (safetensors, seeds concatenated
    along the sample axis). Nothing is written if the model fails its contract.
    """
    import torch

    from reschrom.io import write_parquet
    from reschrom.probe import ProbeResult, save_tensors
    from reschrom.registry import is_denoiser_model, load_model

    if threads:
        torch.set_num_threads(int(threads))
    net = load_model(model_spec, device, resolution=settings.get("resolution"), sampler=settings.get("sampler", "default"))
    common = dict(
        model=model,
        seeds=settings["seeds"],
        num_samples=int(settings["num_samples"]),
        guidance_scale=float(settings["guidance_scale"]),
        num_inference_steps=int(settings["num_inference_steps"]),
        kernel=kernel,
        keep_tensors=tensors_out is not None,
    )
    if is_denoiser_model(model_spec):
        df, results = measure_guidance_denoiser(net, prompt, **common)
    else:
        df, results = measure_guidance(net, prompt, resolution=settings.get("resolution"), **common)
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


# --------------------------------------------------------------------------------------
# aggregation (streaming over the dumps)
# --------------------------------------------------------------------------------------

UNDEFINED_RATIO = 1e-12
"""r̃(t) is undefined (NaN) where ‖g‖² ≤ this × ‖ε_cond‖²: g is then rounding noise
(e.g. the oracle after its concept posterior has collapsed, where exactly g = 0)."""

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


def theory_for_alpha_bar(alpha_bar: np.ndarray, num_levels: int, kernel: int = 2) -> np.ndarray:
    """r_m at the recorded ᾱ_t (eq. 18 by Theorem 1, eq. 34–35: r_m(t) = r*_m(-ln ᾱ_t)), (N, M)."""
    from reschrom.theory import chromatography_natural

    with np.errstate(divide="ignore"):
        s = -np.log(np.clip(np.asarray(alpha_bar, dtype=np.float64), 0.0, 1.0))
    return chromatography_natural(s, num_levels, kernel)


def aggregate_chromatography(
    dumps: Sequence[str | os.PathLike], kernel: int = 2, undefined_ratio: float = UNDEFINED_RATIO
) -> pd.DataFrame:
    """r̃_m(t) averaged over prompts, with its std over prompts and the theory r_m(t).

    Streams: each dump (one prompt) is read, reduced to its per-prompt table
    (:func:`prompt_chromatography`) and folded into running sums over (t_frac, m), so memory
    does not grow with the number of prompts. ``r_measured`` is the mean over the prompts where
    r̃ is defined, ``r_measured_std`` their sample std (0 for one prompt), ``n_prompts`` their
    number. Extra columns: alpha_bar, norm_guidance, norm_cond, norm_uncond (means over prompts).
    """
    if not dumps:
        raise ValueError("aggregate_chromatography: no guidance dumps given")
    acc: pd.DataFrame | None = None
    sums = ["r_sum", "r_sq", "n", "ng", "nc", "nu", "k"]
    for path in dumps:
        per = prompt_chromatography(_read_dump(path), undefined_ratio).set_index(["t_frac", "m"])
        r = per["r_measured"]
        part = pd.DataFrame(
            {
                "resolution": per["resolution"],
                "alpha_bar": per["alpha_bar"],
                "r_sum": r.fillna(0.0),
                "r_sq": (r**2).fillna(0.0),
                "n": r.notna().astype(np.int64),
                "ng": per["norm_guidance"],
                "nc": per["norm_cond"],
                "nu": per["norm_uncond"],
                "k": 1,
            }
        )
        if acc is None:
            acc = part
        else:
            if not acc.index.equals(part.index):
                raise ValueError(
                    f"guidance dump {path}: its (t_frac, m) grid differs from the first dump's "
                    "(different num_inference_steps or resolution?)"
                )
            acc[sums] = acc[sums] + part[sums]
    assert acc is not None
    n = acc["n"].to_numpy()
    mean = np.where(n > 0, acc["r_sum"] / np.maximum(n, 1), np.nan)
    var = np.where(n > 1, (acc["r_sq"] - n * mean**2) / np.maximum(n - 1, 1), 0.0)
    out = acc.reset_index()
    M = int(out["m"].max()) + 1
    out["r_measured"] = mean
    out["r_measured_std"] = np.where(n > 0, np.sqrt(np.clip(var, 0.0, None)), np.nan)
    out["n_prompts"] = n.astype(np.int32)
    ab = out["alpha_bar"].to_numpy()
    r_th = theory_for_alpha_bar(ab, M, kernel)
    out["r_theory"] = r_th[np.arange(len(out)), out["m"].to_numpy()]
    k = acc["k"].to_numpy()
    out["norm_guidance"] = acc["ng"].to_numpy() / k
    out["norm_cond"] = acc["nc"].to_numpy() / k
    out["norm_uncond"] = acc["nu"].to_numpy() / k
    extra = ["alpha_bar", "norm_guidance", "norm_cond", "norm_uncond"]
    out = out[CHROMATOGRAPHY_COLUMNS + extra].sort_values(["t_frac", "m"], ascending=[False, True])
    out["m"] = out["m"].astype(np.int32)
    out["resolution"] = out["resolution"].astype(np.int32)
    return out.reset_index(drop=True)


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


def agreement_table(chrom: pd.DataFrame, model: str = "") -> pd.DataFrame:
    """Measured vs theoretical chromatography, one row per level m.

    peak_t_measured / peak_t_theory: t_frac at which r̃_m / r_m peak on the model's step grid
    (steps where r̃ is undefined are skipped); peak_t_diff = measured − theory;
    spearman_peak_order: Spearman rank correlation of the two peak times across levels (NaN if
    either is constant); jsd_mean / jsd_max: Jensen–Shannon divergence (bits) between r̃(·|t)
    and r(·|t), mean and max over the steps where r̃ is defined (their number: n_t).
    """
    from scipy.stats import spearmanr

    meas = chrom.pivot_table(index="t_frac", columns="m", values="r_measured", dropna=False).sort_index()
    theo = chrom.pivot_table(index="t_frac", columns="m", values="r_theory").sort_index()
    res = chrom.groupby("m")["resolution"].first()
    meas = meas.reindex(index=theo.index, columns=theo.columns)
    ok = meas.notna().all(axis=1)
    t = theo.index.to_numpy()
    pm = np.array([t[ok.to_numpy()][np.argmax(meas.loc[ok, m].to_numpy())] if ok.any() else np.nan for m in theo.columns])
    pt = np.array([t[np.argmax(theo[m].to_numpy())] for m in theo.columns])
    if ok.sum() and np.ptp(pm) > 0 and np.ptp(pt) > 0:
        rho = float(spearmanr(pm, pt).statistic)
    else:
        rho = float("nan")
    jsd = jensen_shannon(meas.loc[ok].to_numpy(), theo.loc[ok].to_numpy()) if ok.any() else np.array([np.nan])
    return pd.DataFrame(
        {
            "model": model,
            "m": theo.columns.astype(np.int32),
            "resolution": res.reindex(theo.columns).to_numpy().astype(np.int32),
            "peak_t_measured": pm,
            "peak_t_theory": pt,
            "peak_t_diff": pm - pt,
            "spearman_peak_order": rho,
            "jsd_mean": float(np.mean(jsd)),
            "jsd_max": float(np.max(jsd)),
            "n_t": int(ok.sum()),
        }
    )[AGREEMENT_COLUMNS]


def write_chromatography(
    dumps: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    agreement_out: str | os.PathLike,
    model: str,
    kernel: int = 2,
) -> None:
    """Rule entry point: aggregate the dumps of one model and write both tables atomically."""
    from reschrom.io import write_parquet

    chrom = aggregate_chromatography(dumps, kernel)
    write_parquet(chrom, out)
    write_parquet(agreement_table(chrom, model), agreement_out)
