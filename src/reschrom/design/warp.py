"""Schedules designed from a target chromatography (Theorem 1, eq. 18, 34–35): the time warp.

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

Neither torch nor diffusers is imported at import time (theory jobs start fast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reschrom.theory.resolution import chromatography
from reschrom.theory.schedules import ArrayLike, Schedule, alpha_bar_from_log_snr

METHODS = ("tilt", "mixture")


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
