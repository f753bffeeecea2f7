"""Aggregating the guidance dumps (paper §4.1, eq. 18–19): one chromatography table per model.

:func:`stack_prompt_tables` reads the dumps one at a time and keeps each prompt's r̃_m(t) (eq. 19,
mean over its samples; T·M numbers); :func:`aggregate_chromatography` averages them over prompts,
joins the theory r_m(t) (eq. 18 via Theorem 1, from the recorded ᾱ_t of the model's own scheduler)
and adds a 95 % percentile bootstrap interval over prompts; :func:`category_table` does the same
per prompt category; :func:`write_chromatography` is the rule entry point. NumPy and pandas only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from reschrom.measure.agreement import agreement_table
from reschrom.measure.bootstrap import bootstrap_means, bootstrap_rng, percentile_interval
from reschrom.measure.guidance import UNDEFINED_RATIO, UndefinedStepsWarning, read_dump
from reschrom.measure.prompts import DEFAULT_CATEGORY


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


def theory_for_alpha_bar(alpha_bar: np.ndarray, num_levels: int, kernel: int = 2) -> np.ndarray:
    """r_m at the recorded ᾱ_t (eq. 18 by Theorem 1, eq. 34–35: r_m(t) = r*_m(-ln ᾱ_t)), (N, M)."""
    from reschrom.theory.resolution import chromatography_natural

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
        df = read_dump(path)
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
    boot = bootstrap_means(stack.r, n_boot, bootstrap_rng(seed, label))
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
