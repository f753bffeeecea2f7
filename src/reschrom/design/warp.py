"""Schedules and sampling steps designed from a target chromatography (Theorem 1, eq. 18, 34–35).

**Shares.** By Theorem 1 (eq. 34–35) the chromatography of any schedule is that of the natural
schedule read at s(t) = −ln ᾱ_t: r_m(t) = r*_m(s(t)), r*_m(s) ∝ 4^m e^s / (e^s + 4^m − 1)².
A schedule spends the share

    S_m = ∫_0^1 r_m(t) dt                                                    (uniform time)

of its trajectory on level m (Σ_m S_m = 1 by eq. 18). A monotone time warp t ↦ t'(t) with
t'(0) = 0, t'(1) = 1 keeps every ᾱ value (and so every r*_m(s)) but changes how much time is
spent at each: the designed schedule ᾱ'(t') = ᾱ(t(t')) has, by change of variables,

    S'_m = ∫_0^1 r_m(t) p(t) dt,       p(t) = dt'/dt > 0,  ∫_0^1 p dt = 1,

so designing a schedule is choosing a density p over the base's time. In s, p(t)dt = g(s)ds with
g(s) = h(s)·p(t(s)) and h = dt/ds of the base; only the base's end points s_min = s(0) and
s_max = s(1) constrain what is reachable: the shares of every schedule with these end points
fill the convex hull of the curve {r*(s): s ∈ [s_min, s_max]}.

**Construction** (:func:`design_schedule`). Two choices of p, both strictly positive (so the warp
is strictly monotone) and both keeping the end points (t' = 0 ↔ s_min, t' = 1 ↔ s_max):

* ``tilt`` (default): the density closest to the base's uniform time in relative entropy,
  min KL(p‖1) subject to ∫ r_m p dt = S^target_m. Its solution is the exponential tilt
  p(t) ∝ exp(Σ_j λ_j r_j(t)); the M multipliers minimise the convex dual
  log ∫ exp(λ·r) dt − λ·S^target (damped Newton; the Hessian is the covariance of r under p,
  singular along λ ∝ 1 because Σ_j r_j = 1, hence a pseudo-inverse). It reaches every target
  in the interior of the reachable hull exactly; for one outside it (the dual is unbounded) it
  solves the soft-constrained problem min KL(p‖1) + |S' − S^target|²/(2ε) (a ridge ε|λ|²/2 on
  the dual, ε = :data:`TILT_RIDGE`) instead: near the reachable shares closest to the target
  without a degenerate warp, with the residual reported.
* ``mixture``: the construction of the issue, g(s) = h(s)·Σ_j w_j r*_j(s), i.e.
  p(t) = Σ_j w_j r_j(t) with w ≥ 0. Then S'_m = Σ_j A_mj w_j / Σ_j b_j w_j with
  A_mj = ∫ r_m r_j dt and b_j = Σ_m A_mj = S^base_j; since Σ_m S^target_m = 1, solving
  A w = S^target (non-negative least squares, M × M) gives b·w = 1 where it is solvable, and the
  shares are normalised by b·w otherwise. w ∝ 1 gives p = 1 (the base itself). It reaches only
  the cone spanned by the columns of A, a part of the hull.

Both return the achieved shares (by the same quadrature) and the residual max_m |S'_m − S^target_m|.
The result is a :class:`WarpedSchedule`: the base evaluated at t(t'), a piecewise-linear monotone
table t' ↦ t (and so t' ↦ s, :meth:`WarpedSchedule.s_table`).

**Export to diffusers.** A designed schedule is used in two ways (:func:`scheduler_config`,
:func:`pipeline_kwargs`):

* *training a new model on it*: a VP (DDPM-family) base becomes ``trained_betas`` of a
  ``DDPMScheduler`` (or any scheduler of that family via ``from_config``):
  β_i = 1 − ᾱ'_i/ᾱ'_{i−1}, ᾱ'_i = ᾱ'(i/(T−1)), capped at 0.999 like diffusers' own
  ``betas_for_alpha_bar`` (a zero-terminal-SNR base keeps ᾱ'_{T−1} ≈ 0, not 0);
* *sampling a model trained on the base* with N steps evenly spaced in the designed time
  (t'_k = k/N, k = N … 1, then to t' = 0): a DDPM-family scheduler whose ``set_timesteps``
  accepts ``timesteps`` (DDPM, Euler, Heun, DPM-Solver, LCM, TCD …; *not* DDIMScheduler, which
  only takes evenly spaced steps — its update, eq. 4, is Euler's in σ = √((1−ᾱ)/ᾱ), so use
  ``EulerDiscreteScheduler``) gets the base's integer steps round(t(t'_k)·(T−1)), made strictly
  decreasing; ``EulerDiscreteScheduler`` also takes ``sigmas`` (the N + 1 values
  σ(t'_k) … 0); ``FlowMatchEulerDiscreteScheduler`` takes ``sigmas`` *before* its own shift
  (σ'(u) = su/(1 + (s−1)u) is applied inside ``set_timesteps``, so the designed σ is passed as
  u = σ/(s − (s−1)σ)); ``EDMEulerScheduler`` takes a ramp in [0, 1] into its Karras formula
  σ = (σ_max^{1/ρ} + ramp(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, inverted here. A pipeline passes these on
  (``pipe(..., timesteps=...)`` or ``sigmas=``, diffusers' ``retrieve_timesteps``; IFPipeline
  takes ``timesteps`` only).

**Resolution shift** (:func:`shift_table`). Using a model trained at R at resolution k·R adds
log₂k finer levels; the content the model saw at its level m (R/2^m pixels) is level
j = m + log₂k at kR, whose SNR is 4^j·SNR'(t) = 4^m k²·SNR'(t). Keeping every old level's window
(the same ᾱ_{τ_m}(t), eq. 16, hence the same r*, eq. 34) therefore needs

    SNR'(t) = SNR(t) / k²,   log SNR'(t) = log SNR(t) − 2 ln k,   ᾱ' = ᾱ / (k² − (k² − 1) ᾱ):

a noisier schedule. It is *exactly* simple diffusion's shifted schedule (log-SNR shifted by
2 ln k; for the cosine schedule without offset −2 ln tan(πt/2) − 2 ln k), and diffusers'
``snr_shift_scale`` s = k² (CogVideoXDDIMScheduler: ᾱ' = ᾱ/(s + (1 − s)ᾱ), i.e. SNR' = SNR/s).
SD3's shift σ' = kσ/(1 + (k − 1)σ) gives (1 − σ')/σ' = (1 − σ)/(kσ), i.e. SNR'_flow = SNR_flow/k²:
applied to the flow-matching σ (the flow-equivalent σ = 1/(1 + √SNR) of any schedule) it is the
same warp again. As SD3/FLUX use it — on the sampling *time* t of the base (σ = t for flow
matching) — it coincides with the derived warp for flow-matching bases (shifts compose:
s₁ then s₂ is s₁s₂), but for VP bases it is a reparametrisation of the base (Theorem 1: it keeps
the end points and the ᾱ range and only moves time), not an SNR shift; it then differs from the
derived warp (by 2 ln k at both end points where these are not clipped; the two curves cross
at isolated t at most). For EDM the derived warp is σ' = kσ. The table reports the maximum
|Δ log SNR| of each pair over the t where none is clipped, and a ``note`` with the crossings.

**NFE experiment** (:func:`run_nfe`). A trained ε model sampled with DDIM (η = 0, x̂0 clamped to
[-1, 1] with ε recomputed, as the workflow's DDPM models are saved with ``clip_sample``) at each NFE
with four step placements from the same x_T: DDIMScheduler's ``leading`` and ``trailing``
spacing, Karras ρ = 7 σ-spacing, and ``balanced`` (N steps evenly spaced in the time of the
equal-share design of the model's own ᾱ table), scored against held-out data.

This module imports neither torch nor diffusers at import time (theory jobs start fast); the
NFE experiment (:func:`run_nfe`) and the diffusers checks import them inside.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reschrom.schedules import (
    LOG_SNR_LIMIT,
    ArrayLike,
    DiscreteSchedule,
    EDMSchedule,
    FlowMatchingSchedule,
    ReparametrizedSchedule,
    Schedule,
    alpha_bar_from_log_snr,
    build_schedule,
)
from reschrom.theory import chromatography, level_resolutions, num_levels

METHODS = ("tilt", "mixture")
NFE_TASKS = ("lowres", "t2i")
"""Trained ε models the NFE experiment samples (a DDPMPipeline, an IFPipeline)."""
SPACINGS = ("leading", "trailing", "karras", "balanced")
"""Step placements of the NFE experiment: diffusers' DDIM ``timestep_spacing`` leading and
trailing, Karras ρ = 7 σ-spacing mapped to the model's steps, and the designed equal-share one."""
MAX_BETA = 0.999
"""β cap of an exported ``trained_betas`` table (diffusers' ``betas_for_alpha_bar``)."""
SHARE_TOLERANCE = 1e-6
"""|Σ shares − 1| allowed in a config's ``design.target.shares``."""
MET_TOLERANCE = 1e-6
"""A design whose shares are within this of the target (max over levels) has ``converged``."""
TILT_RIDGE = 1e-3
"""Ridge ε of the tilt's dual for a target outside the reachable hull (:func:`_solve_tilt`):
smaller comes closer to the nearest reachable shares (scaled_linear, 7 equal shares: residual
0.1056 at 1e-5, 0.1086 at 1e-3) but concentrates the time at a few ᾱ (density up to 1100×
the base's at 1e-5, 90× at 1e-3)."""


class DesignError(ValueError):
    """A design setting that cannot work; the message is one line naming the key."""


# --------------------------------------------------------------------------------------
# the designed schedule
# --------------------------------------------------------------------------------------


def _interp_ext(x: ArrayLike, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation through (xp, fp), extended linearly past both ends."""
    x = np.asarray(x, dtype=np.float64)
    y = np.interp(x, xp, fp)
    lo = fp[0] + (x - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi = fp[-1] + (x - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return np.where(x < xp[0], lo, np.where(x > xp[-1], hi, y))


@dataclass
class WarpedSchedule(Schedule):
    """ᾱ'(t') = ᾱ_base(t(t')) for a strictly increasing piecewise-linear table t' ↦ t with
    t(0) = 0 and t(1) = 1 (so the end points s_min, s_max of the base are kept).

    ``t_new`` and ``t_base`` are the table's knots (both strictly increasing from 0 to 1).
    The native time is the base's (a DDPM step, σ, …): what a model trained on the base is
    conditioned on. By Theorem 1, r'_m(t') = r_m(t(t')).
    """

    base: Schedule
    t_new: np.ndarray
    t_base: np.ndarray
    name: str = "designed"

    def __post_init__(self) -> None:
        a = np.asarray(self.t_new, dtype=np.float64)
        b = np.asarray(self.t_base, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
            raise DesignError(f"schedule {self.name!r}: t_new and t_base need the same length ≥ 2")
        if not (np.all(np.diff(a) > 0) and np.all(np.diff(b) > 0)):
            raise DesignError(f"schedule {self.name!r}: the warp table must be strictly increasing")
        if not (abs(a[0]) < 1e-12 and abs(a[-1] - 1) < 1e-12 and abs(b[0]) < 1e-12 and abs(b[-1] - 1) < 1e-12):
            raise DesignError(f"schedule {self.name!r}: the warp must map 0 → 0 and 1 → 1")
        a[0], a[-1], b[0], b[-1] = 0.0, 1.0, 0.0, 1.0
        self.t_new, self.t_base = a, b

    def warp(self, t_frac: ArrayLike) -> np.ndarray:
        """t(t'): the base's time at designed time t' (linear past [0, 1])."""
        return _interp_ext(t_frac, self.t_new, self.t_base)

    def warp_inverse(self, t_base: ArrayLike) -> np.ndarray:
        """t'(t): the designed time at base time t."""
        return _interp_ext(t_base, self.t_base, self.t_new)

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        return self.base.log_snr(self.warp(t_frac))

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        return self.warp_inverse(self.base.t_frac_from_log_snr(log_snr))

    def native_t(self, t_frac: ArrayLike) -> np.ndarray:
        return self.base.native_t(self.warp(t_frac))

    def t_frac_from_native(self, t: ArrayLike) -> np.ndarray:
        return self.warp_inverse(self.base.t_frac_from_native(t))

    def s_table(self) -> pd.DataFrame:
        """The monotone table t' ↦ s = −ln ᾱ (with the base time t and log SNR) at the knots."""
        ls = self.log_snr(self.t_new)
        return pd.DataFrame(
            {
                "t_frac": self.t_new,
                "t_base": self.t_base,
                "s": np.logaddexp(0.0, -ls),  # −ln ᾱ = ln(1 + e^{−log SNR})
                "log_snr": ls,
                "alpha_bar": alpha_bar_from_log_snr(ls),
            }
        )


def _grid(n_t: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell edges and midpoints of a uniform grid of ``n_t`` cells on [0, 1]."""
    edges = np.linspace(0.0, 1.0, int(n_t) + 1)
    return edges, 0.5 * (edges[1:] + edges[:-1])


def level_shares(schedule: Schedule, num_levels: int, kernel: int = 2, n_t: int = 4000) -> np.ndarray:
    """S_m = ∫_0^1 r_m(t) dt (eq. 18 by Theorem 1, eq. 34–35), midpoint rule on ``n_t`` cells;
    shape (M,), Σ S_m = 1."""
    _, mid = _grid(n_t)
    return chromatography(schedule, mid, num_levels, kernel).mean(axis=0)


def level_windows(
    schedule: Schedule, num_levels: int, kernel: int = 2, n_t: int = 4000, mass: tuple[float, float] = (0.1, 0.9)
) -> pd.DataFrame:
    """Each level's window on t ∈ [0, 1] (1 = noise): ``window_lo``/``window_hi``, the t below
    which 10 % / 90 % of ∫ r_m dt lies; ``peak``, the t of max r_m; ``max_lo``/``max_hi``, the
    first and last t where level m has the largest r (NaN where it never does)."""
    edges, mid = _grid(n_t)
    r = chromatography(schedule, mid, num_levels, kernel)
    cum = np.vstack([np.zeros(num_levels), np.cumsum(r, axis=0)])
    cum = cum / cum[-1]
    top = np.argmax(r, axis=1)
    rows = []
    for m in range(num_levels):
        where = np.flatnonzero(top == m)
        rows.append(
            {
                "m": m,
                "share": float(r[:, m].mean()),
                "window_lo": float(np.interp(mass[0], cum[:, m], edges)),
                "window_hi": float(np.interp(mass[1], cum[:, m], edges)),
                "peak": float(mid[np.argmax(r[:, m])]),
                "max_lo": float(edges[where[0]]) if len(where) else math.nan,
                "max_hi": float(edges[where[-1] + 1]) if len(where) else math.nan,
            }
        )
    return pd.DataFrame(rows)


@dataclass
class Design:
    """A designed schedule and how well it meets its target."""

    schedule: WarpedSchedule
    base: Schedule
    num_levels: int
    kernel: int
    method: str
    target: np.ndarray
    achieved: np.ndarray
    base_shares: np.ndarray
    residual: float
    converged: bool
    """The achieved shares are within :data:`MET_TOLERANCE` of the target."""
    params: np.ndarray = field(repr=False)
    """λ of the tilt or w of the mixture."""


def _logsumexp(z: np.ndarray) -> float:
    zmax = float(np.max(z))
    return zmax + math.log(float(np.sum(np.exp(z - zmax))))


def _solve_tilt(
    R: np.ndarray, target: np.ndarray, tol: float, max_iter: int, ridge: float = 0.0
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Minimise log mean exp(R λ) − λ·target + ridge/2·|λ|² (damped Newton); returns
    (p per cell, λ, converged). ``ridge`` > 0 is the dual of the soft-constrained primal
    min KL(p‖1) + |E_p r − target|²/(2·ridge): it has a solution for every target, near the
    reachable shares closest to it."""
    n, M = R.shape
    lam = np.zeros(M)
    logw = -math.log(n)

    def dual(lv: np.ndarray) -> float:
        return _logsumexp(R @ lv + logw) - float(lv @ target) + 0.5 * ridge * float(lv @ lv)

    converged = False
    for _ in range(max_iter):
        z = R @ lam
        p = np.exp(z - z.max())
        p /= p.sum()
        mean = p @ R
        g = mean - target + ridge * lam
        if np.max(np.abs(g)) < tol:
            converged = True
            break
        H = (R * p[:, None]).T @ R - np.outer(mean, mean) + ridge * np.eye(M)
        d = -np.linalg.pinv(H, rcond=1e-13, hermitian=True) @ g
        f0, slope, step = dual(lam), float(g @ d), 1.0
        while step > 1e-12 and dual(lam + step * d) > f0 + 1e-4 * step * slope:
            step *= 0.5
        if step <= 1e-12:
            break
        lam = lam + step * d
    z = R @ lam
    p = np.exp(z - z.max())
    return p / p.sum(), lam, converged


def _solve_mixture(R: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NNLS of A w = target with A_mj = ∫ r_m r_j dt; returns (p per cell, w)."""
    from scipy.optimize import nnls

    n = R.shape[0]
    A = R.T @ R / n
    w, _ = nnls(A, target)
    if not np.any(w > 0):
        w = np.ones(R.shape[1])
    dens = R @ w
    return dens / dens.sum(), w


def design_schedule(
    base: Schedule,
    num_levels: int,
    target: ArrayLike | str = "equal",
    method: str = "tilt",
    kernel: int = 2,
    n_t: int = 2000,
    name: str | None = None,
    tol: float = 1e-8,
    max_iter: int = 200,
) -> Design:
    """A monotone time warp of ``base`` whose level shares S_m (module docstring) meet ``target``.

    ``target``: ``"equal"`` (1/M each), or M shares summing to 1 (e.g. :func:`level_shares` of
    another schedule). ``method``: ``tilt`` (closest to the base in relative entropy; default) or
    ``mixture`` (p = Σ_j w_j r_j, w ≥ 0 by NNLS). The base is discretised into ``n_t`` equal cells
    of its own time; the warp is linear within each. Keeps the end points: t' = 0 ↔ t = 0 and
    t' = 1 ↔ t = 1 of the base.
    """
    M = int(num_levels)
    if M < 1:
        raise DesignError(f"num_levels must be ≥ 1, got {num_levels!r}")
    if method not in METHODS:
        raise DesignError(f"method {method!r} is unknown; allowed: {', '.join(METHODS)}")
    tgt = np.full(M, 1.0 / M) if isinstance(target, str) and target == "equal" else np.asarray(target, dtype=np.float64)
    if tgt.shape != (M,):
        raise DesignError(f"target has {tgt.size} shares; {M} levels need {M}")
    if np.any(tgt <= 0) or abs(tgt.sum() - 1) > 1e-6:
        raise DesignError(f"target shares must be > 0 and sum to 1, got {np.round(tgt, 6).tolist()}")
    edges, mid = _grid(n_t)
    R = chromatography(base, mid, M, kernel)
    if method == "tilt":
        p, params, exact = _solve_tilt(R, tgt, tol, max_iter)
        if not exact:  # outside the reachable hull: the closest reachable shares instead
            p, params, _ = _solve_tilt(R, tgt, tol, max_iter, ridge=TILT_RIDGE)
    else:
        p, params = _solve_mixture(R, tgt)
    # a strictly positive density keeps the warp strictly monotone
    p = np.maximum(p, 1e-15 * p.max())
    p /= p.sum()
    achieved = p @ R
    residual = float(np.max(np.abs(achieved - tgt)))
    t_new = np.concatenate([[0.0], np.cumsum(p)])
    t_new /= t_new[-1]
    sched = WarpedSchedule(base, t_new, edges, name=name or f"{base.name}_designed")
    return Design(
        schedule=sched,
        base=base,
        num_levels=M,
        kernel=int(kernel),
        method=method,
        target=tgt,
        achieved=achieved,
        base_shares=R.mean(axis=0),
        residual=residual,
        converged=residual <= MET_TOLERANCE,
        params=params,
    )


# --------------------------------------------------------------------------------------
# diffusers export
# --------------------------------------------------------------------------------------


def designed_time_grid(num_inference_steps: int) -> np.ndarray:
    """t'_k = k/N for k = N … 0: N steps evenly spaced in the designed time, then t' = 0."""
    n = int(num_inference_steps)
    if n < 1:
        raise DesignError(f"num_inference_steps must be ≥ 1, got {num_inference_steps!r}")
    return np.arange(n, -1, -1, dtype=np.float64) / n


def _base_time(schedule: Schedule, t_frac: np.ndarray) -> tuple[Schedule, np.ndarray]:
    """(base schedule, base time) of a designed (or any) schedule at ``t_frac``."""
    if isinstance(schedule, WarpedSchedule):
        return schedule.base, schedule.warp(t_frac)
    return schedule, np.asarray(t_frac, dtype=np.float64)


def strictly_decreasing_steps(t: ArrayLike, num_train_timesteps: int) -> np.ndarray:
    """Integer steps from real ones (descending): rounded, clipped to 0 … T−1, and where two
    coincide the earlier (noisier) one is moved up by one (down from T−1 where that overflows),
    so that no step is lost."""
    T = int(num_train_timesteps)
    if len(np.atleast_1d(t)) > T:
        raise DesignError(f"{len(np.atleast_1d(t))} distinct steps do not fit in {T} training steps")
    steps = np.clip(np.rint(np.asarray(t, dtype=np.float64)), 0, T - 1).astype(np.int64)
    for i in range(len(steps) - 2, -1, -1):
        steps[i] = max(steps[i], steps[i + 1] + 1)
    # pushed past T−1 at the noisy end: push down from there instead
    if len(steps):
        steps[0] = min(steps[0], T - 1)
    for i in range(1, len(steps)):
        steps[i] = min(steps[i], steps[i - 1] - 1)
    return steps


def ddpm_timesteps(schedule: Schedule, num_inference_steps: int, num_train_timesteps: int) -> list[int]:
    """N integer steps of a model trained on the base's T-step table, evenly spaced in the
    designed time (t'_k = k/N, k = N … 1): round(t(t'_k)·(T−1)), strictly decreasing."""
    _, tb = _base_time(schedule, designed_time_grid(num_inference_steps)[:-1])
    return strictly_decreasing_steps(tb * (num_train_timesteps - 1), num_train_timesteps).tolist()


def _flow_shift(cfg: Mapping[str, Any], mu: float | None) -> float:
    if cfg.get("use_dynamic_shifting"):
        if mu is None:
            raise DesignError("this FlowMatchEulerDiscreteScheduler shifts dynamically: pass its `mu`")
        if cfg.get("time_shift_type", "exponential") == "linear":
            return float(mu)
        return float(math.exp(mu))
    return float(cfg.get("shift", 1.0))


SET_TIMESTEPS_PARAMS: dict[str, frozenset[str]] = {
    **{
        c: frozenset({"timesteps"})
        for c in (
            "DDPMScheduler",
            "DDPMParallelScheduler",
            "DPMSolverMultistepScheduler",
            "DPMSolverSinglestepScheduler",
            "HeunDiscreteScheduler",
            "LCMScheduler",
            "TCDScheduler",
        )
    },
    "EulerDiscreteScheduler": frozenset({"timesteps", "sigmas"}),
    "FlowMatchEulerDiscreteScheduler": frozenset({"timesteps", "sigmas"}),
    "EDMEulerScheduler": frozenset({"sigmas"}),
    "DDIMScheduler": frozenset(),
    "PNDMScheduler": frozenset(),
}
"""Custom ``set_timesteps`` arguments of the common diffusers schedulers (diffusers 0.42; tests
check it against diffusers), so that exporting a design imports neither torch nor diffusers.
Other classes are looked up in diffusers."""


def _set_timesteps_params(cls_name: str, scheduler: Any = None) -> frozenset[str]:
    """Which of ``timesteps``/``sigmas`` the scheduler class's ``set_timesteps`` accepts."""
    if cls_name in SET_TIMESTEPS_PARAMS:
        return SET_TIMESTEPS_PARAMS[cls_name]
    import inspect

    cls = type(scheduler) if scheduler is not None and not isinstance(scheduler, Mapping) else None
    if cls is None:
        import diffusers

        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            raise DesignError(f"scheduler class {cls_name!r} is not in diffusers")
    return frozenset(inspect.signature(cls.set_timesteps).parameters) & {"timesteps", "sigmas"}


def _config_alphas_cumprod(cfg: Mapping[str, Any]) -> np.ndarray:
    """ᾱ table of a DDPM-family scheduler config in NumPy (``trained_betas`` or ``beta_schedule``;
    zero terminal SNR as diffusers' Euler stores it, ᾱ_{T−1} = 2⁻²⁴)."""
    from reschrom.schedules import ddpm_alphas_cumprod

    if cfg.get("trained_betas") is not None:
        ac = np.cumprod(1.0 - np.asarray(cfg["trained_betas"], dtype=np.float64))
    else:
        ac = ddpm_alphas_cumprod(
            cfg.get("beta_schedule", "linear"),
            float(cfg.get("beta_start", 1e-4)),
            float(cfg.get("beta_end", 0.02)),
            int(cfg.get("num_train_timesteps", 1000)),
            bool(cfg.get("rescale_betas_zero_snr", False)),
        )
    ac = ac.copy()
    if ac[-1] <= 0:
        ac[-1] = 2.0**-24
    return ac


def pipeline_kwargs(
    schedule: Schedule, num_inference_steps: int, scheduler: Any, mu: float | None = None, prefer: str = "sigmas"
) -> dict[str, list[float] | list[int]]:
    """What ``scheduler.set_timesteps(**kw)`` (and a pipeline's ``pipe(..., **kw)``) needs to take
    N steps evenly spaced in the designed time of ``schedule`` (module docstring, "Export").

    ``scheduler`` is a diffusers scheduler or its config (with ``_class_name``). Returns
    ``{"timesteps": [...]}`` (DDPM-family schedulers whose ``set_timesteps`` accepts them) or
    ``{"sigmas": [...]}`` (Euler: σ = √((1−ᾱ)/ᾱ) then 0; flow matching: before the scheduler's
    shift; EDM: the ramp of its Karras formula). Raises :class:`DesignError` for a scheduler
    that takes neither (e.g. ``DDIMScheduler``: use ``EulerDiscreteScheduler``, the same update).
    ``prefer="timesteps"`` gives an Euler scheduler integer steps instead of its exact σ (for a
    pipeline such as IFPipeline that passes on ``timesteps`` only).
    """
    if isinstance(scheduler, Mapping):
        cfg = dict(scheduler)
        cls_name = str(cfg.get("_class_name", "DDPMScheduler"))
    else:
        cfg, cls_name = dict(scheduler.config), type(scheduler).__name__
    params = _set_timesteps_params(cls_name, scheduler)
    tp = designed_time_grid(num_inference_steps)
    base, tb = _base_time(schedule, tp)
    if "FlowMatch" in cls_name and "sigmas" in params:
        if cfg.get("shift_terminal") or cfg.get("use_karras_sigmas") or cfg.get("use_exponential_sigmas") or cfg.get(
            "use_beta_sigmas"
        ):
            raise DesignError(f"{cls_name}: custom sigmas are remapped by its config (shift_terminal/karras/…)")
        s = _flow_shift(cfg, mu)
        sigma = 1.0 / (1.0 + np.exp(base.log_snr(tb[:-1]) / 2))  # flow σ with ((1−σ)/σ)² = SNR
        return {"sigmas": (sigma / (s - (s - 1) * sigma)).tolist()}
    if cls_name.startswith("EDM") and "sigmas" in params:
        if cfg.get("sigma_schedule", "karras") != "karras":
            raise DesignError(f"{cls_name}: sigma_schedule {cfg.get('sigma_schedule')!r} ignores custom sigmas")
        rho = float(cfg.get("rho", 7.0))
        lo, hi = float(cfg.get("sigma_min", 0.002)) ** (1 / rho), float(cfg.get("sigma_max", 80.0)) ** (1 / rho)
        sigma = np.exp(-base.log_snr(tb[:-1]) / 2)
        return {"sigmas": ((sigma ** (1 / rho) - hi) / (lo - hi)).tolist()}
    T = int(cfg.get("num_train_timesteps", 1000))
    if "sigmas" in params and cls_name.startswith("Euler") and prefer == "sigmas":
        # at most the scheduler's own σ_max (a zero-terminal-SNR base has σ = ∞ at t = 1)
        ac = _config_alphas_cumprod(cfg)
        sigma = np.minimum(np.exp(-base.log_snr(tb) / 2), float(np.sqrt((1 - ac[-1]) / ac[-1])))
        sigma[-1] = 0.0
        return {"sigmas": sigma.tolist()}
    if "timesteps" in params:
        return {"timesteps": ddpm_timesteps(schedule, num_inference_steps, T)}
    raise DesignError(
        f"{cls_name}.set_timesteps takes neither custom timesteps nor sigmas; for DDIM (eq. 4) use "
        "EulerDiscreteScheduler.from_config(...), the same update in σ = √((1−ᾱ)/ᾱ)"
    )


def trained_betas(schedule: Schedule, num_train_timesteps: int = 1000) -> np.ndarray:
    """β_i = 1 − ᾱ'_i/ᾱ'_{i−1} of the designed schedule at t' = i/(T−1) (β_0 = 1 − ᾱ'_0), capped
    at :data:`MAX_BETA`."""
    T = int(num_train_timesteps)
    a = schedule.alpha_bar(np.arange(T) / (T - 1))
    prev = np.concatenate([[1.0], a[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        b = 1.0 - a / prev
    return np.clip(np.nan_to_num(b, nan=MAX_BETA), 0.0, MAX_BETA)


def scheduler_config(schedule: Schedule, num_train_timesteps: int = 1000, class_name: str = "DDPMScheduler") -> dict:
    """A diffusers scheduler config of the designed schedule (training on it): ``trained_betas``
    of T steps, loadable with ``DDPMScheduler.from_config`` (or DDIM, Euler, … of that family)."""
    return {
        "_class_name": class_name,
        "num_train_timesteps": int(num_train_timesteps),
        "trained_betas": trained_betas(schedule, num_train_timesteps).tolist(),
        "beta_schedule": "linear",
        "prediction_type": "epsilon",
        "clip_sample": False,
        "timestep_spacing": "trailing",
    }


def base_scheduler_config(base: Schedule, num_train_timesteps: int = 1000) -> dict:
    """The diffusers scheduler of a model trained on ``base`` (for :func:`pipeline_kwargs`):
    flow matching → FlowMatchEulerDiscreteScheduler(shift), EDM → EDMEulerScheduler (Karras),
    a VP table or continuous VP schedule → EulerDiscreteScheduler with the base's own betas
    (the DDIM update at any steps)."""
    if isinstance(base, FlowMatchingSchedule):
        return {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": base.shift}
    if isinstance(base, EDMSchedule):
        return {
            "_class_name": "EDMEulerScheduler",
            "sigma_min": base.sigma_min,
            "sigma_max": base.sigma_max,
            "rho": base.rho,
            "sigma_schedule": "karras",
        }
    T = base.num_steps if isinstance(base, DiscreteSchedule) else int(num_train_timesteps)
    cfg = scheduler_config(base, T, "EulerDiscreteScheduler")
    cfg["timestep_spacing"] = "leading"  # init_noise_sigma = √(σ_max² + 1): x_T ~ N(0, I) as DDIM
    return cfg


def export_design(design: Design, steps: Sequence[int], num_train_timesteps: int = 1000) -> dict:
    """Everything a diffusers user needs, as JSON-able data: the designed schedule as a
    scheduler config (``scheduler_config``: trained_betas; VP bases), the base's scheduler
    (``base_scheduler_config``) and for each N in ``steps`` the ``set_timesteps``/pipeline
    keyword arguments for it (``sampling``), with the shares achieved."""
    base = design.base
    base_cfg = base_scheduler_config(base, num_train_timesteps)
    out: dict[str, Any] = {
        "schedule": design.schedule.name,
        "base": base.name,
        "method": design.method,
        "num_levels": design.num_levels,
        "target": design.target.tolist(),
        "achieved": design.achieved.tolist(),
        "base_shares": design.base_shares.tolist(),
        "residual": design.residual,
        "converged": design.converged,
        "base_scheduler_config": base_cfg,
        "sampling": {},
    }
    if not isinstance(base, (FlowMatchingSchedule, EDMSchedule)):
        T = base.num_steps if isinstance(base, DiscreteSchedule) else int(num_train_timesteps)
        out["scheduler_config"] = scheduler_config(design.schedule, T)
    for n in steps:
        kw = pipeline_kwargs(design.schedule, int(n), base_cfg)
        if base_cfg["_class_name"].startswith("Euler"):  # DDPM-family pipelines (IF, DDPM)
            kw.update(pipeline_kwargs(design.schedule, int(n), base_cfg, prefer="timesteps"))
        out["sampling"][str(int(n))] = kw
    return out


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
    from reschrom.registry import model_entry

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


# --------------------------------------------------------------------------------------
# resolution shift
# --------------------------------------------------------------------------------------


@dataclass
class SNRShiftedSchedule(Schedule):
    """SNR'(t) = SNR(t)/k²: the warp that keeps every level's window at k times the resolution
    (module docstring, "Resolution shift"); simple diffusion's shift, diffusers' ``snr_shift_scale``
    = k². The base's log-SNR is extended linearly past its ends (SNR⁻¹ of the base)."""

    base: Schedule
    ratio: float = 2.0
    name: str = "shifted"

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        return np.clip(self.base.log_snr(t_frac) - 2 * math.log(self.ratio), -LOG_SNR_LIMIT, LOG_SNR_LIMIT)

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        return self.base.t_frac_from_log_snr(np.asarray(log_snr, dtype=np.float64) + 2 * math.log(self.ratio))

    def native_t(self, t_frac: ArrayLike) -> np.ndarray:
        return self.base.native_t(t_frac)

    def t_frac_from_native(self, t: ArrayLike) -> np.ndarray:
        return self.base.t_frac_from_native(t)


def sd3_time_shift(base: Schedule, ratio: float) -> ReparametrizedSchedule:
    """SD3/FLUX's shift on the base's own time: ᾱ'(t) = ᾱ(kt/(1 + (k−1)t)), k = ``ratio``."""
    k = float(ratio)
    return ReparametrizedSchedule(
        base,
        warp=lambda t: k * t / (1 + (k - 1) * t),
        warp_inverse=lambda u: u / (k - (k - 1) * u),
        name=f"{base.name}_sd3_{k:g}",
    )


def derived_alpha_bar(alpha_bar: ArrayLike, ratio: float) -> np.ndarray:
    """ᾱ' with 4^{m + log₂k} SNR'(t) = 4^m SNR(t): ᾱ' = ᾱ/(k² − (k² − 1)ᾱ), the inverse of the
    level map ᾱ_τ = k²ᾱ/((k² − 1)ᾱ + 1) of eq. 16 with n^{2m} = k²."""
    a = np.asarray(alpha_bar, dtype=np.float64)
    k2 = float(ratio) ** 2
    return a / (k2 - (k2 - 1.0) * a)


def snr_shift_scale_alpha_bar(alpha_bar: ArrayLike, scale: float) -> np.ndarray:
    """diffusers' ``snr_shift_scale`` (CogVideoXDDIMScheduler): ᾱ' = ᾱ/(s + (1 − s)ᾱ)."""
    a = np.asarray(alpha_bar, dtype=np.float64)
    return a / (scale + (1.0 - scale) * a)


def _ls(a: np.ndarray) -> np.ndarray:
    from reschrom.schedules import log_snr_from_alpha_bar

    return log_snr_from_alpha_bar(a)


SHIFT_PAIRS = {
    "derived_simple": ("derived", "simple"),
    "derived_sd3": ("derived", "sd3"),
    "simple_sd3": ("simple", "sd3"),
    "derived_snr_shift_scale": ("derived", "snr_shift_scale"),
}


def shift_table(base: Schedule, ratios: Sequence[float] = (2, 4), n_t: int = 201) -> pd.DataFrame:
    """One row per (ratio k, t_frac) of base ``base``: ᾱ and log SNR of the base, of the derived
    warp (ᾱ' = ᾱ/(k² − (k² − 1)ᾱ)), of simple diffusion's shift (log SNR − 2 ln k), of SD3's shift
    on the base's time (σ-shift s = k) and of diffusers' ``snr_shift_scale`` = k²; per k the max
    |Δ log SNR| of each pair (``max_dlogsnr_<pair>``) over the t where none is clipped, and a
    ``note`` saying where they coincide."""
    t = np.linspace(0.0, 1.0, int(n_t))
    a = base.alpha_bar(t)
    ls_base = base.log_snr(t)
    rows = []
    flow = isinstance(base, FlowMatchingSchedule)
    for k in ratios:
        k = float(k)
        cols = {
            "derived": derived_alpha_bar(a, k),
            "simple": SNRShiftedSchedule(base, k).alpha_bar(t),
            "sd3": sd3_time_shift(base, k).alpha_bar(t),
            "snr_shift_scale": snr_shift_scale_alpha_bar(a, k * k),
        }
        lss = {n: _ls(v) for n, v in cols.items()}
        ok = np.abs(ls_base) < LOG_SNR_LIMIT - 2 * math.log(k) - 1e-9
        for v in lss.values():
            ok &= np.abs(v) < LOG_SNR_LIMIT - 1e-9
        df = pd.DataFrame(
            {
                "schedule": base.name,
                "ratio": k,
                "t_frac": t,
                "alpha_bar_base": a,
                "log_snr_base": ls_base,
                **{f"alpha_bar_{n}": v for n, v in cols.items()},
                **{f"log_snr_{n}": v for n, v in lss.items()},
                "t_base_derived": base.t_frac_from_log_snr(ls_base - 2 * math.log(k)),
                "compared": ok,
            }
        )
        for pair, (x, y) in SHIFT_PAIRS.items():
            d = np.abs(lss[x] - lss[y])[ok]
            df[f"max_dlogsnr_{pair}"] = float(d.max()) if len(d) else math.nan
        d_sd3 = df["max_dlogsnr_derived_sd3"].iloc[0]
        if flow:
            note = (
                f"flow matching: all four coincide (SD3's σ-shift by {k:g} is SNR/{k * k:g}); max |Δ log SNR| "
                f"derived–SD3 {d_sd3:.1e} (rounding)"
            )
        else:
            diff = (lss["derived"] - lss["sd3"])[ok]
            tc = t[ok]
            cross = tc[1:][np.sign(diff[1:]) != np.sign(diff[:-1])]
            where = (
                "they cross (coincide) only at t ≈ " + ", ".join(f"{x:.2f}" for x in cross[:3])
                if len(cross)
                else "they coincide nowhere inside (only where both are clipped)"
            )
            note = (
                f"derived = simple diffusion = snr_shift_scale {k * k:g} (log SNR − {2 * math.log(k):.2f} everywhere); "
                f"SD3's shift on this schedule's own time is a reparametrisation (keeps the end points and the ᾱ "
                f"range), not SNR/{k * k:g}: max |Δ log SNR| {d_sd3:.2f}; {where}"
            )
        df["note"] = note
        rows.append(df)
    return pd.concat(rows, ignore_index=True)


def write_shift_table(specs: Mapping[str, Mapping[str, Any]], ratios: Sequence[float], n_t: int, out: str) -> None:
    """``results/design/shift.parquet``: :func:`shift_table` of every base ``{name: spec}``."""
    from reschrom.io import write_parquet

    dfs = [shift_table(build_schedule(n, s), ratios, n_t) for n, s in specs.items()]
    write_parquet(pd.concat(dfs, ignore_index=True), out)


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
    from it (``reschrom.sampling.threshold_eps``: ``static`` clamps x̂0 to [-1, 1], ``multires``
    is Algorithm 1), so that any diffusers loop — Euler's, which has no clipping, or a
    pipeline's — samples as the project's DDIM with that threshold (``reschrom.sampling.sample``;
    unlike DDIMScheduler's ``clip_sample``, which keeps the raw ε in the step). The UNet's input is
    the VP x_t (after ``scale_model_input``) and its timestep an integer step of the table
    ``alphas_cumprod``; extra output channels (IF's learned variance) pass unchanged. Returns the
    hook handle (``.remove()``)."""
    import torch

    from reschrom.sampling import threshold_eps

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
    from the same x_T per seed, and score the samples against held-out data (``reschrom.metrics``):
    ``lsd_db`` (RAPSD log-spectral distance), ``band_error`` (:func:`_band_error`), ``diversity``;
    a text model (IFPipeline) also ``accuracy_colour``/``accuracy_shape`` of its captions.
    ``threshold`` (default ``static``, as the workflow's DDPM models are saved with ``clip_sample``)
    thresholds x̂0 at every step (:func:`threshold_hook`); without it an ε model
    started at t = T−1 (trailing, balanced) amplifies its error at ᾱ_{T−1} ≈ 0 by 1/√ᾱ."""

    from reschrom.metrics import sample_metrics
    from reschrom.models import load_pipeline
    from reschrom.pipelines import resolve_device
    from reschrom.sampling import initial_noise
    from reschrom.upscale import load_images

    device = str(resolve_device(device))
    pipe = load_pipeline(model_dir, device)
    pipe.set_progress_bar_config(disable=True)
    unet = pipe.unet
    cfg = dict(pipe.scheduler.config)
    res = int(unet.config.sample_size)
    C = int(unet.config.in_channels)
    M = num_levels(res, kernel)
    data = load_images(data_path, limit=max_data)
    text = hasattr(pipe, "tokenizer") and getattr(pipe, "text_encoder", None) is not None
    prompts = None
    if text:
        from reschrom.data import load_captions

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
                    from reschrom.training import caption_accuracy

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


__all__ = [
    "Design",
    "DesignError",
    "SNRShiftedSchedule",
    "WarpedSchedule",
    "check_design_config",
    "design_schedule",
    "export_design",
    "level_shares",
    "level_windows",
    "pipeline_kwargs",
    "scheduler_config",
    "shift_table",
]
