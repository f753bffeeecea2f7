"""The design stage's config glue and tables: a design from the config's ``design:`` section, its
level windows and shares as Parquet (:func:`write_design`, the rule entry point).

Neither torch nor diffusers is imported at import time (theory jobs start fast).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from reschrom.design.export import export_design
from reschrom.design.nfe import NFE_TASKS
from reschrom.design.warp import (
    SHARE_TOLERANCE,
    Design,
    DesignError,
    design_schedule,
    level_shares,
    level_windows,
)
from reschrom.theory.resolution import chromatography, level_resolutions, num_levels
from reschrom.theory.schedules import DiscreteSchedule, Schedule, build_schedule

# --------------------------------------------------------------------------------------
# tables (workflow outputs)
# --------------------------------------------------------------------------------------


def design_table(design: Design, resolution: int, n_t: int = 400) -> pd.DataFrame:
    """One row per (t_frac, m) of the designed schedule: ``schedule``, ``base``, ``t_frac``,
    ``t_base`` (the warp), ``m``, ``resolution``, ``alpha_bar`` (designed), ``alpha_bar_base``
    (base at the same t_frac), ``s`` (−ln ᾱ, designed), ``r`` (designed, eq. 34–35), ``r_base``."""
    M, k = design.num_levels, design.kernel
    t = np.linspace(0.0, 1.0, int(n_t))
    sch, base = design.schedule, design.base
    a, ab = sch.alpha_bar(t), base.alpha_bar(t)
    r, rb = chromatography(sch, t, M, k), chromatography(base, t, M, k)
    res = level_resolutions(resolution, k)[:M]
    tt = np.repeat(t, M)
    return pd.DataFrame(
        {
            "schedule": sch.name,
            "base": base.name,
            "t_frac": tt,
            "t_base": np.repeat(sch.warp(t), M),
            "m": np.tile(np.arange(M), len(t)).astype(np.int32),
            "resolution": np.tile(res, len(t)).astype(np.int32),
            "alpha_bar": np.repeat(a, M),
            "alpha_bar_base": np.repeat(ab, M),
            "s": np.repeat(np.logaddexp(0.0, -sch.log_snr(t)), M),
            "r": r.ravel(),
            "r_base": rb.ravel(),
        }
    )


def shares_table(design: Design, resolution: int, n_t: int = 4000) -> pd.DataFrame:
    """One row per level m: shares (base, target, achieved), the residual, and each level's
    window before and after (:func:`level_windows`; suffixes ``_base`` and ``_designed``)."""
    M, k = design.num_levels, design.kernel
    wb = level_windows(design.base, M, k, n_t).drop(columns=["m", "share"]).add_suffix("_base")
    wd = level_windows(design.schedule, M, k, n_t).drop(columns=["m", "share"]).add_suffix("_designed")
    head = pd.DataFrame(
        {
            "schedule": design.schedule.name,
            "base": design.base.name,
            "method": design.method,
            "m": np.arange(M, dtype=np.int32),
            "resolution": level_resolutions(resolution, k)[:M].astype(np.int32),
            "share_base": design.base_shares,
            "share_target": design.target,
            "share_designed": design.achieved,
            "share_check": level_shares(design.schedule, M, k, n_t),
            "residual": design.residual,
            "converged": design.converged,
        }
    )
    return pd.concat([head, wb, wd], axis=1)


# --------------------------------------------------------------------------------------
# config → design (DAG-time, no torch)
# --------------------------------------------------------------------------------------


def model_resolution(config: Mapping[str, Any], name: str) -> int:
    """Side length a registry model generates at: data.resolution / n^level of a trained model
    (lowres: level 1, residual: 0, level_m: m, t2i: its ``level``), else ``resolution``."""
    from reschrom.models.registry import model_entry

    e = model_entry(config, name)
    k = int(config.get("kernel", 2))
    if e.get("kind") != "trained":
        return int(config.get("resolution", 64))
    full = int((config.get("data") or {}).get("resolution", 32))
    task = e.get("task")
    lvl = {"lowres": 1, "residual": 0}.get(task)
    if lvl is None:
        lvl = int(name.split("_")[1]) if task == "level" and name.startswith("level_") else int(e.get("level", 0))
    return full // k**lvl


def base_spec(config: Mapping[str, Any], name: str, key: str = "design.schedules") -> dict[str, Any]:
    """The schedule spec of a design base: a ``schedules:`` entry, or the schedule a registry
    model samples with (a trained model: ``training.schedule``, a cosine one as diffusers'
    squaredcos_cap_v2 table; the oracle: its ``beta_schedule``, default squaredcos_cap_v2)."""
    schedules = config.get("schedules") or {}
    if name in schedules:
        return dict(schedules[name])
    models = config.get("models") or {}
    if name in models:
        e = models[name]
        if e.get("kind") == "trained":
            if e.get("objective") == "flow_matching":
                return {"type": "flow_matching", "shift": float(e.get("shift", 1.0))}
            tname = (config.get("training") or {}).get("schedule", "linear")
            spec = dict(schedules.get(tname, {"type": "ddpm"}))
            if spec.get("type") == "cosine":
                spec = {"type": "ddpm", "beta_schedule": "squaredcos_cap_v2"}
            return spec
        if e.get("kind") == "oracle":
            return {"type": "ddpm", "beta_schedule": e.get("beta_schedule", "squaredcos_cap_v2")}
        raise DesignError(
            f"config key '{key}': model {name!r} is a {e.get('kind')} model; give its scheduler as a "
            "'schedules' entry (type: diffusers, path: its scheduler folder) and name that"
        )
    defined = ", ".join(list(schedules) + [n for n, e in models.items() if e.get("kind") in ("trained", "oracle")])
    raise DesignError(f"config key '{key}': {name!r} is neither a schedule nor a trained/oracle model; defined: {defined}")


def check_monotone(schedule: Schedule, key: str, n_t: int = 2001) -> None:
    """ᾱ must not increase with t anywhere (a DDPM table is checked step by step)."""
    if isinstance(schedule, DiscreteSchedule):
        a = np.asarray(schedule.alphas_cumprod, dtype=np.float64)
        t = np.arange(len(a)) / (len(a) - 1)
    else:
        t = np.linspace(0.0, 1.0, n_t)
        a = schedule.alpha_bar(t)
    up = np.flatnonzero(np.diff(a) > 1e-12 * np.maximum(a[1:], 1e-300))
    if len(up) or not np.all(np.isfinite(a)):
        where = f" (it increases at t_frac ≈ {t[up[0] + 1]:.3g})" if len(up) else " (it is not finite)"
        raise DesignError(f"config key '{key}': ᾱ is not monotone in t{where}; a design base needs ᾱ decreasing")


def _levels(config: Mapping[str, Any], name: str) -> tuple[int, int]:
    """(resolution, M) of design base ``name``."""
    sec = config.get("design") or {}
    k = int(config.get("kernel", 2))
    if name in (config.get("schedules") or {}):
        res = int(sec.get("resolution") or config.get("resolution", 64))
    else:
        res = int(sec.get("resolution") or model_resolution(config, name))
    top = num_levels(res, k)
    M = sec.get("num_levels")
    M = top if M is None else int(M)
    if M > top:
        raise DesignError(
            f"config key 'design.num_levels': {M} levels need a resolution of at least {k ** (M - 1)}; "
            f"{name!r} generates at {res} ({top} levels)"
        )
    return res, M


def design_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What the design of base ``name`` depends on (a rule's params): base spec, resolution,
    M, kernel, target (resolved: equal, shares, or the spec of the ``like`` schedule), method,
    grid, steps."""
    sec = config.get("design") or {}
    res, M = _levels(config, name)
    target = sec.get("target", "equal")
    if isinstance(target, Mapping) and "like" in target:
        tgt: Any = {"like": target["like"], "spec": base_spec(config, target["like"], "design.target.like")}
    elif isinstance(target, Mapping) and "shares" in target:
        tgt = {"shares": [float(x) for x in target["shares"]]}
    else:
        tgt = "equal"
    return {
        "base": name,
        "spec": base_spec(config, name),
        "resolution": res,
        "num_levels": M,
        "kernel": int(config.get("kernel", 2)),
        "target": tgt,
        "method": sec.get("method", "tilt"),
        "n_t": int(sec.get("n_t", 2000)),
        "steps": [int(s) for s in sec.get("steps", [8, 16, 32, 50])],
    }


def check_design_config(config: Mapping[str, Any]) -> None:
    """DAG-time checks of the ``design`` section (one line naming the key): shares sum to 1
    and match the number of levels, levels fit the resolution, bases (and ``like``) exist and
    have a monotone ᾱ, model names exist."""
    sec = config.get("design") or {}
    names = list(sec.get("schedules") or [])
    target = sec.get("target", "equal")
    if isinstance(target, Mapping) and "shares" in target:
        sh = [float(x) for x in target["shares"]]
        bad = [i for i, x in enumerate(sh) if not x > 0]
        if bad:
            raise DesignError(f"config key 'design.target.shares.{bad[0]}': {sh[bad[0]]!r} is not a positive share")
        if abs(sum(sh) - 1.0) > SHARE_TOLERANCE:
            raise DesignError(f"config key 'design.target.shares': the shares sum to {sum(sh):.6g}, not 1")
    for n in ["shift", "nfe"]:
        if n in names:
            raise DesignError(f"config key 'design.schedules': {n!r} is reserved (results/design/{n}…); rename the schedule")
    checked: set[str] = set()

    def _check_base(name: str, key: str) -> None:
        spec = base_spec(config, name, key)
        where = f"schedules.{name}" if name in (config.get("schedules") or {}) else key
        if name not in checked:
            try:
                sched = build_schedule(name, spec)
            except (TypeError, ValueError, KeyError, FileNotFoundError) as e:
                raise DesignError(f"config key '{where}': {str(e).splitlines()[0]}") from None
            check_monotone(sched, where)
            checked.add(name)

    for name in names:
        _check_base(name, "design.schedules")
        _, M = _levels(config, name)
        if isinstance(target, Mapping) and "shares" in target and len(target["shares"]) != M:
            raise DesignError(
                f"config key 'design.target.shares': {len(target['shares'])} shares for {M} levels of {name!r}; "
                "give one share per level (or set design.num_levels)"
            )
    if isinstance(target, Mapping) and "like" in target:
        _check_base(str(target["like"]), "design.target.like")
    shift = sec.get("shift") or {}
    for name in shift.get("schedules") or []:
        _check_base(name, "design.shift.schedules")
    nfe = sec.get("nfe") or {}
    models = config.get("models") or {}
    def _nfe_ok(e: Mapping[str, Any]) -> bool:
        return e.get("kind") == "trained" and e.get("task") in NFE_TASKS and e.get("objective", "epsilon") == "epsilon"

    for name in nfe.get("run") or []:
        if not _nfe_ok(models.get(name) or {}):
            ok = [n for n, v in models.items() if _nfe_ok(v)]
            raise DesignError(
                f"config key 'design.nfe.run': {name!r} is not a trained ε-prediction lowres or t2i model; "
                f"defined: {', '.join(ok) or '(none)'}"
            )
        _check_base(name, "design.nfe.run")


def resolve_target(settings: Mapping[str, Any]) -> np.ndarray | str:
    """The target shares of :func:`design_settings` (``like``: that schedule's shares)."""
    tgt = settings["target"]
    if isinstance(tgt, Mapping) and "like" in tgt:
        other = build_schedule(str(tgt["like"]), tgt["spec"])
        return level_shares(other, int(settings["num_levels"]), int(settings["kernel"]))
    if isinstance(tgt, Mapping) and "shares" in tgt:
        return np.asarray(tgt["shares"], dtype=np.float64)
    return "equal"


def design_from_settings(settings: Mapping[str, Any]) -> Design:
    """:func:`design_schedule` of a base from :func:`design_settings`."""
    base = build_schedule(settings["base"], settings["spec"])
    return design_schedule(
        base,
        int(settings["num_levels"]),
        resolve_target(settings),
        method=settings.get("method", "tilt"),
        kernel=int(settings["kernel"]),
        n_t=int(settings.get("n_t", 2000)),
        name=f"{settings['base']}_designed",
    )


def write_design(settings: Mapping[str, Any], out_table: str, out_shares: str, out_json: str) -> None:
    """The workflow's design job: ``results/design/{base}.parquet`` (:func:`design_table`),
    ``{base}_shares.parquet`` (:func:`shares_table`), ``{base}_scheduler.json`` (:func:`export_design`)."""
    from reschrom.io import atomic_path, write_parquet

    d = design_from_settings(settings)
    res = int(settings["resolution"])
    write_parquet(design_table(d, res), out_table)
    write_parquet(shares_table(d, res), out_shares)
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(export_design(d, settings["steps"]), indent=1) + "\n")
