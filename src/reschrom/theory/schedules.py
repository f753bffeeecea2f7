"""Noise schedules as variance-preserving (VP) equivalents on continuous time.

Every schedule maps a time fraction ``t_frac`` in [0, 1] (1 = pure noise) to the cumulative
signal level ᾱ (the paper's α_t, eq. 1: x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε), to SNR(t) = ᾱ/(1-ᾱ)
and back (SNR⁻¹). Schedules that are not VP (flow matching, EDM/Karras sigmas) are mapped
through the SNR: their VP-equivalent is ᾱ = SNR / (1 + SNR) (docs/DESIGN.md, "Other schedules").

All functions are vectorised NumPy in float64 and numerically safe at both ends: log-SNR is
clipped to ±``LOG_SNR_LIMIT`` so that ᾱ = 0 (zero terminal SNR) and ᾱ = 1 stay finite, and
the inverse extends each schedule linearly in log-SNR beyond its ends, so that the time
adjustment τ_m (eq. 16) is defined for every t even where 4^m·SNR(t) exceeds the schedule's
largest SNR.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LOG_SNR_LIMIT = 40.0
"""|log SNR| is clipped here: ᾱ in [4e-18, 1 - 4e-18]."""

ArrayLike = np.ndarray | float


def alpha_bar_from_log_snr(log_snr: ArrayLike) -> np.ndarray:
    """ᾱ = SNR / (1 + SNR) = sigmoid(log SNR): the VP-equivalent signal level."""
    ls = np.clip(np.asarray(log_snr, dtype=np.float64), -LOG_SNR_LIMIT, LOG_SNR_LIMIT)
    return 1.0 / (1.0 + np.exp(-ls))


def log_snr_from_alpha_bar(alpha_bar: ArrayLike) -> np.ndarray:
    """log SNR = log ᾱ - log(1 - ᾱ), clipped to ±LOG_SNR_LIMIT (finite at ᾱ = 0 and 1)."""
    a = np.asarray(alpha_bar, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ls = np.log(a) - np.log1p(-a)
    return np.clip(np.nan_to_num(ls, nan=0.0), -LOG_SNR_LIMIT, LOG_SNR_LIMIT)


class Schedule(ABC):
    """A noise schedule on continuous time ``t_frac`` in [0, 1] (1 = pure noise).

    Subclasses implement :meth:`log_snr` (strictly decreasing in t) and its inverse
    :meth:`t_frac_from_log_snr`; everything else derives from these two.
    """

    name: str = "schedule"

    @abstractmethod
    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        """log SNR(t), strictly decreasing, clipped to ±LOG_SNR_LIMIT."""

    @abstractmethod
    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        """SNR⁻¹ in log form, extended beyond [0, 1] where the schedule's range ends."""

    def alpha_bar(self, t_frac: ArrayLike) -> np.ndarray:
        """Cumulative signal level ᾱ_t of the forward process (eq. 1)."""
        return alpha_bar_from_log_snr(self.log_snr(t_frac))

    def snr(self, t_frac: ArrayLike) -> np.ndarray:
        """SNR(t) = ᾱ_t / (1 - ᾱ_t)."""
        return np.exp(self.log_snr(t_frac))

    def t_frac_from_snr(self, snr: ArrayLike) -> np.ndarray:
        """SNR⁻¹: the time at which the schedule has the given SNR."""
        with np.errstate(divide="ignore"):
            ls = np.log(np.asarray(snr, dtype=np.float64))
        return self.t_frac_from_log_snr(np.clip(ls, -LOG_SNR_LIMIT, LOG_SNR_LIMIT))

    def t_frac_from_alpha_bar(self, alpha_bar: ArrayLike) -> np.ndarray:
        """The time at which ᾱ_t takes the given value."""
        return self.t_frac_from_log_snr(log_snr_from_alpha_bar(alpha_bar))

    def native_t(self, t_frac: ArrayLike) -> np.ndarray:
        """The schedule's own time: a DDPM step, σ for flow matching/EDM, s for natural."""
        return np.asarray(t_frac, dtype=np.float64)

    def t_frac_from_native(self, t: ArrayLike) -> np.ndarray:
        """Inverse of :meth:`native_t`."""
        return np.asarray(t, dtype=np.float64)


@dataclass
class DiscreteSchedule(Schedule):
    """A table of ᾱ at integer steps 0 … T-1 (diffusers' ``alphas_cumprod``).

    Continuous time interpolates log-SNR linearly in the step index k = t_frac·(T-1) and
    extends the first and last segments linearly beyond the table, so that SNR⁻¹ is total.
    """

    alphas_cumprod: np.ndarray
    name: str = "discrete"
    _ls: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ac = np.asarray(self.alphas_cumprod, dtype=np.float64)
        if ac.ndim != 1 or len(ac) < 3:
            raise ValueError(f"schedule {self.name!r}: alphas_cumprod needs ≥ 3 steps")
        ls = log_snr_from_alpha_bar(ac)
        # zero terminal SNR (ᾱ_T = 0) gives -inf, clipped; keep strict monotonicity by
        # continuing the previous slope into the clipped tail.
        for k in range(1, len(ls)):
            if not ls[k] < ls[k - 1]:
                slope = ls[k - 1] - ls[k - 2] if k >= 2 else -1e-6
                ls[k] = ls[k - 1] + min(slope, -1e-6)
        self._ls = ls
        self.alphas_cumprod = ac

    @property
    def num_steps(self) -> int:
        return len(self._ls)

    def native_t(self, t_frac: ArrayLike) -> np.ndarray:
        return np.asarray(t_frac, dtype=np.float64) * (self.num_steps - 1)

    def t_frac_from_native(self, t: ArrayLike) -> np.ndarray:
        return np.asarray(t, dtype=np.float64) / (self.num_steps - 1)

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        k = self.native_t(t_frac)
        ls = self._ls
        n = len(ls)
        i = np.clip(np.floor(k).astype(np.int64), 0, n - 2)
        w = k - i
        out = ls[i] * (1.0 - w) + ls[i + 1] * w
        return np.clip(out, -LOG_SNR_LIMIT, LOG_SNR_LIMIT)

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        y = np.asarray(log_snr, dtype=np.float64)
        ls = self._ls
        n = len(ls)
        # ls is strictly decreasing: search on its negation.
        i = np.searchsorted(-ls, -y, side="left") - 1
        i = np.clip(i, 0, n - 2)
        k = i + (y - ls[i]) / (ls[i + 1] - ls[i])
        return k / (n - 1)


@dataclass
class CosineSchedule(Schedule):
    """Continuous cosine schedule (Nichol & Dhariwal 2021), offset s = 0.008.

    ᾱ(t) = f(t)/f(0), f(t) = cos²((t + s)/(1 + s)·π/2); zero SNR at t = 1.
    """

    s: float = 0.008
    name: str = "cosine"

    def _f0(self) -> float:
        return math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        t = np.asarray(t_frac, dtype=np.float64)
        a = np.cos((t + self.s) / (1 + self.s) * np.pi / 2) ** 2 / self._f0()
        return log_snr_from_alpha_bar(np.clip(a, 0.0, 1.0))

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        # Exact inverse on ᾱ ∈ (0, 1]; beyond ᾱ = 1 (t < 0) continue linearly in log-SNR.
        y = np.asarray(log_snr, dtype=np.float64)
        a = alpha_bar_from_log_snr(y)
        inside = np.arccos(np.sqrt(np.clip(a * self._f0(), 0.0, 1.0)))
        t = inside * 2 / np.pi * (1 + self.s) - self.s
        y0 = float(self.log_snr(0.0))
        eps = 1e-4
        slope = (float(self.log_snr(eps)) - y0) / eps
        return np.where(y > y0, (y - y0) / slope, t)


@dataclass
class NaturalSchedule(Schedule):
    """The natural schedule ᾱ_s = e^{-s} (eq. 28–33, an Ornstein–Uhlenbeck process).

    Native time s runs over [s_min, s_max]; t_frac = (s - s_min)/(s_max - s_min).
    """

    s_min: float = 1e-4
    s_max: float = 12.0
    name: str = "natural"

    def native_t(self, t_frac: ArrayLike) -> np.ndarray:
        return self.s_min + np.asarray(t_frac, dtype=np.float64) * (self.s_max - self.s_min)

    def t_frac_from_native(self, t: ArrayLike) -> np.ndarray:
        return (np.asarray(t, dtype=np.float64) - self.s_min) / (self.s_max - self.s_min)

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        s = self.native_t(t_frac)
        # log(e^{-s}/(1-e^{-s})) = -log(e^s - 1), stable for all s > 0.
        with np.errstate(divide="ignore"):
            ls = -np.log(np.expm1(np.maximum(s, 1e-300)))
        return np.clip(ls, -LOG_SNR_LIMIT, LOG_SNR_LIMIT)

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        y = np.asarray(log_snr, dtype=np.float64)
        s = np.log1p(np.exp(-y))  # e^s - 1 = e^{-y}
        return self.t_frac_from_native(s)


@dataclass
class FlowMatchingSchedule(Schedule):
    """Rectified flow x_t = (1-σ)x0 + σε with the SD3/FLUX time shift.

    σ(t) = shift·t / (1 + (shift - 1)·t); SNR = ((1-σ)/σ)²; native time is σ.
    """

    shift: float = 1.0
    name: str = "flow_matching"

    def native_t(self, t_frac: ArrayLike) -> np.ndarray:
        t = np.asarray(t_frac, dtype=np.float64)
        return self.shift * t / (1 + (self.shift - 1) * t)

    def t_frac_from_native(self, t: ArrayLike) -> np.ndarray:
        s = np.asarray(t, dtype=np.float64)
        return s / (self.shift - (self.shift - 1) * s)

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        sigma = self.native_t(t_frac)
        with np.errstate(divide="ignore", invalid="ignore"):
            ls = 2 * (np.log1p(-sigma) - np.log(sigma))
        return np.clip(np.nan_to_num(ls, nan=-LOG_SNR_LIMIT), -LOG_SNR_LIMIT, LOG_SNR_LIMIT)

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        y = np.asarray(log_snr, dtype=np.float64)
        sigma = 1.0 / (1.0 + np.exp(y / 2))
        return self.t_frac_from_native(sigma)


@dataclass
class EDMSchedule(Schedule):
    """EDM/Karras sigmas σ(t) = (σ_min^{1/ρ} + t(σ_max^{1/ρ} - σ_min^{1/ρ}))^ρ, SNR = 1/σ²."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    name: str = "edm"

    def native_t(self, t_frac: ArrayLike) -> np.ndarray:
        t = np.asarray(t_frac, dtype=np.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return np.maximum(lo + t * (hi - lo), 1e-300) ** self.rho

    def t_frac_from_native(self, t: ArrayLike) -> np.ndarray:
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (np.asarray(t, dtype=np.float64) ** (1 / self.rho) - lo) / (hi - lo)

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        return np.clip(-2 * np.log(self.native_t(t_frac)), -LOG_SNR_LIMIT, LOG_SNR_LIMIT)

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        sigma = np.exp(-np.asarray(log_snr, dtype=np.float64) / 2)
        return self.t_frac_from_native(sigma)


@dataclass
class ReparametrizedSchedule(Schedule):
    """ᾱ'(t') = ᾱ(warp(t')) for a strictly increasing warp of [0, 1] onto itself.

    Used to check Theorem 1: the chromatography is invariant under reparametrisation.
    """

    base: Schedule
    warp: Callable[[np.ndarray], np.ndarray]
    warp_inverse: Callable[[np.ndarray], np.ndarray]
    name: str = "reparametrized"

    def log_snr(self, t_frac: ArrayLike) -> np.ndarray:
        return self.base.log_snr(self.warp(np.asarray(t_frac, dtype=np.float64)))

    def t_frac_from_log_snr(self, log_snr: ArrayLike) -> np.ndarray:
        return self.warp_inverse(self.base.t_frac_from_log_snr(log_snr))


# --------------------------------------------------------------------------------------
# diffusers schedulers
# --------------------------------------------------------------------------------------

DDPM_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


def _linspace_f32(start: float, end: float, n: int) -> np.ndarray:
    """``torch.linspace(start, end, n, dtype=float32)``: float32 end points and step, the first
    half counted up from ``start`` and the second down from ``end`` (one rounding each)."""
    lo, hi = np.float32(start), np.float32(end)
    if n == 1:
        return np.array([lo], dtype=np.float32)
    step = np.float64((hi - lo) / np.float32(n - 1))
    i = np.arange(n, dtype=np.float64)
    half = n // 2
    return np.concatenate(
        [np.float64(lo) + step * i[:half], np.float64(hi) - step * (n - 1 - i[half:])]
    ).astype(np.float32)


def _rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Zero terminal SNR (Lin et al. 2024, Algorithm 1; diffusers ``rescale_zero_terminal_snr``):
    shift √ᾱ so that its last value is 0, scale it so that its first value is unchanged."""
    s = np.sqrt(np.cumprod(1.0 - betas.astype(np.float64)))
    s0, sT = s[0], s[-1]
    s = (s - sT) * (s0 / (s0 - sT))
    ab = s**2
    return 1.0 - np.concatenate([ab[:1], ab[1:] / ab[:-1]])


def ddpm_betas(
    beta_schedule: str = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    num_train_timesteps: int = 1000,
    rescale_betas_zero_snr: bool = False,
) -> np.ndarray:
    """β_1 … β_T of diffusers' ``DDPMScheduler`` (and DDIM, DPM-Solver, … which share them) in
    NumPy, float32 as diffusers stores them: no torch or diffusers import (tests/theory/test_theory.py
    checks every ``beta_schedule`` against diffusers).

    linear: linspace(β_start, β_end); scaled_linear: linspace(√β_start, √β_end)²;
    squaredcos_cap_v2: β_i = min(1 - f((i+1)/T)/f(i/T), 0.999), f(t) = cos²((t + 0.008)/1.008·π/2);
    sigmoid: sigmoid(linspace(-6, 6))·(β_end - β_start) + β_start.
    """
    if beta_schedule not in DDPM_BETA_SCHEDULES:
        raise ValueError(
            f"beta_schedule {beta_schedule!r} is unknown; allowed: {', '.join(DDPM_BETA_SCHEDULES)}"
        )
    T = int(num_train_timesteps)
    if T < 1:
        raise ValueError(f"num_train_timesteps must be ≥ 1, got {num_train_timesteps!r}")
    if beta_schedule == "linear":
        betas = _linspace_f32(beta_start, beta_end, T)
    elif beta_schedule == "scaled_linear":
        betas = _linspace_f32(beta_start**0.5, beta_end**0.5, T) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        i = np.arange(T, dtype=np.float64)

        def f(t: np.ndarray) -> np.ndarray:
            return np.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.minimum(1.0 - f((i + 1) / T) / f(i / T), 0.999)
    else:  # sigmoid (GeoDiff)
        one = np.float32(1.0)
        sig = one / (one + np.exp(-_linspace_f32(-6.0, 6.0, T)))
        betas = sig * np.float32(beta_end - beta_start) + np.float32(beta_start)
    betas = np.asarray(betas).astype(np.float32)
    if rescale_betas_zero_snr:
        betas = _rescale_zero_terminal_snr(betas).astype(np.float32)
    return betas


def ddpm_alphas_cumprod(
    beta_schedule: str = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    num_train_timesteps: int = 1000,
    rescale_betas_zero_snr: bool = False,
) -> np.ndarray:
    """ᾱ_t = Π_{s≤t} (1 - β_s), diffusers' ``alphas_cumprod`` (a float32 table; the product is
    accumulated in float64 as torch's CPU ``cumprod`` does), returned as float64."""
    betas = ddpm_betas(beta_schedule, beta_start, beta_end, num_train_timesteps, rescale_betas_zero_snr)
    alphas = (np.float32(1.0) - betas).astype(np.float64)
    return np.cumprod(alphas).astype(np.float32).astype(np.float64)


def ddpm_schedule(
    beta_schedule: str = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    num_train_timesteps: int = 1000,
    rescale_betas_zero_snr: bool = False,
    name: str | None = None,
) -> DiscreteSchedule:
    """A DDPM schedule: the ᾱ table of diffusers' ``DDPMScheduler`` with these settings,
    computed in NumPy (:func:`ddpm_alphas_cumprod`; importing torch and diffusers for it
    would cost a theory job seconds of start-up)."""
    ac = ddpm_alphas_cumprod(beta_schedule, beta_start, beta_end, num_train_timesteps, rescale_betas_zero_snr)
    return DiscreteSchedule(ac, name=name or beta_schedule)


def schedule_from_diffusers(scheduler: Any, name: str = "diffusers") -> Schedule:
    """The VP-equivalent schedule of an instantiated diffusers scheduler.

    Reads ``alphas_cumprod`` (DDPM/DDIM/DPM-Solver/… family), or ``sigmas`` of a flow-matching
    scheduler (SNR = ((1-σ)/σ)²), or Karras/EDM ``sigmas`` (SNR = 1/σ²).
    """
    if getattr(scheduler, "alphas_cumprod", None) is not None:
        return DiscreteSchedule(np.asarray(scheduler.alphas_cumprod, dtype=np.float64), name=name)
    cls = type(scheduler).__name__
    cfg = scheduler.config
    if "FlowMatch" in cls:
        return FlowMatchingSchedule(shift=float(cfg.get("shift", 1.0)), name=name)
    if "EDM" in cls:
        return EDMSchedule(
            sigma_min=float(cfg.get("sigma_min", 0.002)),
            sigma_max=float(cfg.get("sigma_max", 80.0)),
            rho=float(cfg.get("rho", 7.0)),
            name=name,
        )
    raise ValueError(f"scheduler {cls}: has neither alphas_cumprod nor a known sigma schedule")


def schedule_from_config_file(path: str | Path, name: str = "diffusers") -> Schedule:
    """Load a diffusers scheduler from a local ``scheduler_config.json`` (or its folder)."""
    import diffusers

    p = Path(path)
    if p.is_dir():
        p = p / "scheduler_config.json"
    if not p.is_file():
        raise FileNotFoundError(f"scheduler config not found: {p}")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"scheduler config {p} is not valid JSON: {e}") from None
    cls_name = cfg.get("_class_name", "DDPMScheduler")
    cls = getattr(diffusers, cls_name, None)
    if cls is None:
        raise ValueError(f"scheduler config {p}: unknown _class_name {cls_name!r}")
    return schedule_from_diffusers(cls.from_config(cfg), name=name)


SCHEDULE_TYPES = ("ddpm", "cosine", "natural", "flow_matching", "edm", "diffusers")


def build_schedule(name: str, spec: Mapping[str, Any]) -> Schedule:
    """Build a schedule from a config entry ``{type: ..., **params}``."""
    spec = dict(spec)
    kind = spec.pop("type")
    if kind == "ddpm":
        return ddpm_schedule(name=name, **spec)
    if kind == "cosine":
        return CosineSchedule(name=name, **spec)
    if kind == "natural":
        return NaturalSchedule(name=name, **spec)
    if kind == "flow_matching":
        return FlowMatchingSchedule(name=name, **spec)
    if kind == "edm":
        return EDMSchedule(name=name, **spec)
    if kind == "diffusers":
        return schedule_from_config_file(spec["path"], name=name)
    raise ValueError(f"schedule {name!r}: type {kind!r} is unknown; allowed: {', '.join(SCHEDULE_TYPES)}")


DEFAULT_SCHEDULES: dict[str, dict[str, Any]] = {
    "linear": {"type": "ddpm", "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02},
    "scaled_linear": {
        "type": "ddpm",
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
    },
    "cosine": {"type": "cosine", "s": 0.008},
    "squaredcos_cap_v2": {"type": "ddpm", "beta_schedule": "squaredcos_cap_v2"},
    "sigmoid": {"type": "ddpm", "beta_schedule": "sigmoid", "beta_start": 1e-4, "beta_end": 0.02},
    "natural": {"type": "natural"},
    "flow_matching": {"type": "flow_matching", "shift": 1.0},
    "edm": {"type": "edm"},
}
"""The schedules named in the foundation issue, with their usual parameters."""
