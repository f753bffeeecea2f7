"""Time-dependent prompt composing (paper §4.3, eq. 6 and 25).

Composition of prompts c_1 … c_n with time-dependent weights (eq. 6):

    ε̃(x, t) = ε(x, t) + s · Σ_i w_i(t) [ε(x, t; c_i) - ε(x, t)],

s the pipeline's guidance scale. Weights are functions of ``t_frac = t / T`` (the paper's t/T,
T = ``num_train_timesteps`` of the model's scheduler, t the timestep the denoiser receives):

* :func:`heaviside_weights` — eq. 25: the "structure" prompt while t ≥ ηT, the "texture" prompt
  afterwards (η = 1: texture alone, η = 0: structure alone);
* :func:`linear_weights`, :func:`sigmoid_weights` — cross-fades of width ``width`` around ηT;
* :func:`band_weights` — band-targeted: prompt i drives the levels S_i,
  w_i(t) = Σ_{m∈S_i} r_m(t) with r the theoretical chromatography of the model's schedule
  (eq. 18, 34–35).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

WeightFn = Callable[[float], float]
"""w_i(t_frac): a prompt's weight at ``t_frac = t / T`` (0 = data, 1 = noise)."""

WEIGHTINGS = ("heaviside", "linear", "sigmoid", "bands")


# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------


def _check_eta(eta: float) -> float:
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    return eta


@dataclass(frozen=True)
class Heaviside:
    """One side of eq. 25's switch at ηT.

    ``structure``: w = 1 while t ≥ ηT (H(0) = 1 on this side, so η = 0 covers every step,
    t = 0 included), else 0; η = 1 never (t < T for every timestep). ``texture``: 1 - that.
    """

    eta: float
    structure: bool

    def __call__(self, t_frac: float) -> float:
        on = self.eta < 1.0 and t_frac >= self.eta
        return float(on == self.structure)


def heaviside_weights(eta: float) -> list[WeightFn]:
    """Eq. 25: [w_structure, w_texture] = [H(t ≥ ηT), 1 - H(t ≥ ηT)]."""
    eta = _check_eta(eta)
    return [Heaviside(eta, True), Heaviside(eta, False)]


@dataclass(frozen=True)
class LinearFade:
    """w = clip((t_frac - η)/width + ½, 0, 1) for the structure prompt, 1 - w for texture."""

    eta: float
    width: float
    structure: bool

    def __call__(self, t_frac: float) -> float:
        w = min(1.0, max(0.0, (t_frac - self.eta) / self.width + 0.5))
        return w if self.structure else 1.0 - w


@dataclass(frozen=True)
class SigmoidFade:
    """w = σ((t_frac - η)/width) for the structure prompt, 1 - w for texture."""

    eta: float
    width: float
    structure: bool

    def __call__(self, t_frac: float) -> float:
        z = (t_frac - self.eta) / self.width
        w = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
        return w if self.structure else 1.0 - w


def linear_weights(eta: float, width: float = 0.2) -> list[WeightFn]:
    """Linear cross-fade from structure to texture over [η - width/2, η + width/2]."""
    eta = _check_eta(eta)
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return [LinearFade(eta, width, True), LinearFade(eta, width, False)]


def sigmoid_weights(eta: float, width: float = 0.05) -> list[WeightFn]:
    """Sigmoid cross-fade from structure to texture centred on η (scale ``width``)."""
    eta = _check_eta(eta)
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return [SigmoidFade(eta, width, True), SigmoidFade(eta, width, False)]


@dataclass(frozen=True)
class BandWeight:
    """w(t) = Σ_{m∈S} r_m(t): the share of the levels S in the signal generated at t (eq. 18).

    ``t_frac`` (= t/T) of a discrete schedule (a diffusers ``alphas_cumprod`` table, T steps) is
    mapped to the table's step t = t_frac·T, so step t is evaluated exactly; a continuous
    schedule is evaluated at ``t_frac`` itself.
    """

    schedule: Any  # reschrom.theory.schedules.Schedule
    levels: tuple[int, ...]
    num_levels: int
    num_train_timesteps: int
    kernel: int = 2

    def __call__(self, t_frac: float) -> float:
        from reschrom.theory.resolution import chromatography
        from reschrom.theory.schedules import DiscreteSchedule

        s = t_frac
        if isinstance(self.schedule, DiscreteSchedule):
            s = float(self.schedule.t_frac_from_native(t_frac * self.num_train_timesteps))
        r = chromatography(self.schedule, np.clip(s, 0.0, 1.0), self.num_levels, self.kernel)
        return float(r[list(self.levels)].sum())


def band_weights(
    schedule: Any,
    level_sets: Sequence[Sequence[int]],
    num_levels: int,
    num_train_timesteps: int = 1000,
    kernel: int = 2,
) -> list[WeightFn]:
    """Band-targeted weights: prompt i drives levels S_i, w_i(t) = Σ_{m∈S_i} r_m(t).

    ``schedule`` is a :class:`reschrom.theory.schedules.Schedule` (e.g. ``schedule_from_diffusers`` of
    the model's scheduler). Levels m = 0 (full resolution) … num_levels - 1 (1×1). Disjoint sets
    covering every level give weights that sum to 1 at every t.
    """
    out = []
    for s in level_sets:
        lv = tuple(sorted({int(m) for m in s}))
        if any(m < 0 or m >= num_levels for m in lv):
            raise ValueError(f"levels {lv} out of range 0…{num_levels - 1}")
        out.append(BandWeight(schedule, lv, int(num_levels), int(num_train_timesteps), kernel))
    return out


def split_levels(num_levels: int, first_fine_coarse: int) -> list[list[int]]:
    """[coarse levels m ≥ first_fine_coarse, fine levels m < first_fine_coarse]: a structure /
    texture split of the pyramid at level ``first_fine_coarse``."""
    if not 0 <= first_fine_coarse <= num_levels:
        raise ValueError(f"split level {first_fine_coarse} out of range 0…{num_levels}")
    return [list(range(first_fine_coarse, num_levels)), list(range(first_fine_coarse))]


def make_weights(
    weighting: str,
    eta: float,
    width: float | None = None,
    schedule: Any = None,
    num_levels: int | None = None,
    num_train_timesteps: int = 1000,
    kernel: int = 2,
) -> list[WeightFn]:
    """[w_structure, w_texture] of a named weighting (``WEIGHTINGS``) at control parameter η.

    For ``bands`` the split level is the level whose theoretical peak time is closest to η:
    the structure prompt drives the levels that peak before (at larger t than) ηT.
    """
    if weighting == "heaviside":
        return heaviside_weights(eta)
    if weighting == "linear":
        return linear_weights(eta, width if width is not None else 0.2)
    if weighting == "sigmoid":
        return sigmoid_weights(eta, width if width is not None else 0.05)
    if weighting == "bands":
        from reschrom.theory.resolution import peak_times

        if schedule is None or num_levels is None:
            raise ValueError("bands weighting needs the model's schedule and num_levels")
        from reschrom.theory.schedules import DiscreteSchedule

        peaks = peak_times(schedule, num_levels, kernel)  # schedule t_frac, descending in m
        if isinstance(schedule, DiscreteSchedule):
            peaks = schedule.native_t(peaks) / num_train_timesteps  # as t/T
        split = int(np.sum(peaks < _check_eta(eta)))  # fine levels peak after ηT
        return band_weights(
            schedule, split_levels(num_levels, split), num_levels, num_train_timesteps, kernel
        )
    raise ValueError(f"weighting {weighting!r} is unknown; allowed: {', '.join(WEIGHTINGS)}")
