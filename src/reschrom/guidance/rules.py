"""Guidance rules: per-band, per-time guidance scales w_m(t) on the bands of eq. 19.

With the CFG term g = ε(x_t, t; c) − ε(x_t, t) and its orthogonal pyramid bands g^(m)
(eq. 19: g^(m) = U^m D^m g − U^{m+1} D^{m+1} g, Σ_m g^(m) = g exactly), a band rule guides

    ε̃ = ε_u + Σ_m w_m(t) g^(m)                                                  (eq. 5 per band)

(w_m ≡ w is plain CFG, eq. 5; w_m = 1 for every m is the conditional prediction, i.e. no
guidance). It is evaluated without forming the bands: with P_m = U^m D^m (P_0 = I),
Σ_m w_m g^(m) = w_0 g + Σ_{m≥1} (w_m − w_{m−1}) P_m g, a Horner sum from the coarsest level
(:func:`band_scale`): one pooling chain, nothing for the levels whose scale does not change.

Rules (:data:`METHODS`), each a callable ``rule(pred_cond, pred_uncond, t_frac, step=…,
num_steps=…, timestep=…) -> pred`` on one batch, ``t_frac`` ∈ [0, 1] the model schedule's own
time fraction (1 = noise):

* ``cfg`` — w_m(t) = w (eq. 5);
* ``interval`` — w inside a window lo ≤ t_frac ≤ hi, 1 outside (Kynkäänniemi et al. 2024);
* ``bands`` — constant per-band scales (w_0 … w_{M−1}, finest first): an FDG-style split on
  the orthogonal bands;
* ``chroma`` — chromatography-scheduled: w_m(t) = 1 + (w − 1)·(r_m(t)/max_t r_m)^p with r_m the
  theoretical chromatography of the model's own schedule (eq. 18; by Theorem 1, eq. 34–35,
  r_m(t) = r*_m(−ln ᾱ_t) for any schedule): each band is guided in proportion to how much of it
  is being formed, at full scale at its own peak; p = 0 is CFG, large p narrows each band's
  window around its peak;
* ``chroma_window`` — w_m(t) = w while band m is being formed, r_m(t) ≥ θ·max_t r_m, else 1;
  θ = 0 is CFG;
* ``chroma_onset`` — w_m(t) = w on the rising flank of band m's formation only: r_m(t) ≥ θ·max_t
  r_m and t ≥ t*_m, the time of the band's peak, t*_m < 1 (1 elsewhere). Since SNR_{τ_m} =
  4^m·SNR(t), every level's d log SNR/dt is the same and r_m(t) = p_m(1 − p_m) / Σ_n p_n(1 − p_n)
  with p_m = ᾱ_{τ_m(t)} (eq. 18 with eq. 16); an interior band peaks where its level's signal
  share p_m is near ½ (the finest at t = 0, the coarsest at t = 1, so never guided). Before the
  peak the band's content is being chosen, after it the band is refined around a choice already
  made: guiding it there only overshoots. θ = 0 guides the whole rising flank;
* ``fdg``, ``apg`` — diffusers' own ``FrequencyDecoupledGuidance`` (Laplacian pyramid, needs
  ``kornia``) and ``AdaptiveProjectedGuidance``, wrapped by :class:`DiffusersGuiderRule` so
  that they run wherever the band rules run.

No rule evaluates the denoiser: each combines the two predictions a CFG step already has.
``docs/guidance.md`` justifies the chromatography-scheduled family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reschrom.guidance.settings import (
    BAND_METHODS,
    CHROMA_METHODS,
    METHODS,
    GuidanceError,
    check_scale,
    check_window,
    default_share,
)

# --------------------------------------------------------------------------------------
# the band sum
# --------------------------------------------------------------------------------------


def band_scale(g: torch.Tensor, scales: torch.Tensor | Sequence[float], kernel: int = 2) -> torch.Tensor:
    """Σ_m w_m g^(m) for the bands g^(m) of eq. 19, without forming them.

    ``scales``: (M,) or per sample (B, M), m = 0 the finest band. Uses
    Σ_m w_m g^(m) = w_0 g + Σ_{m≥1} (w_m − w_{m−1}) U^m D^m g, summed coarse to fine.
    Equal to ``band_reconstruct([w_m · band]…)`` up to rounding (the bands are orthogonal
    projections' differences).
    """
    from reschrom.theory.pyramid import downsample, upsample
    from reschrom.theory.resolution import num_levels

    M = num_levels(g.shape[-1], kernel)
    w = torch.as_tensor(scales, dtype=g.dtype, device=g.device)
    if w.shape[-1] != M:
        raise GuidanceError(f"{w.shape[-1]} band scales for a {g.shape[-1]}×{g.shape[-1]} image with {M} bands")
    if w.ndim == 1:
        w = w.expand(g.shape[0], M)
    d = torch.diff(w, dim=1)  # (B, M−1): w_m − w_{m−1}, m = 1 … M−1
    col = lambda v: v.reshape(-1, *([1] * (g.ndim - 1)))  # noqa: E731
    active = [m for m in range(1, M) if bool((d[:, m - 1] != 0).any())]
    out = col(w[:, 0]) * g
    if not active:
        return out
    coarse = [g]
    for _ in range(max(active)):
        coarse.append(downsample(coarse[-1], 1, kernel))
    acc = None
    for m in range(max(active), 0, -1):  # Horner: acc_m = Δ_m D^m g + U acc_{m+1}
        term = col(d[:, m - 1]) * coarse[m] if m in active else None
        if acc is not None:
            acc = upsample(acc, 1, kernel)
            acc = acc + term if term is not None else acc
        else:
            acc = term
    return out + upsample(acc, 1, kernel)


# --------------------------------------------------------------------------------------
# band scale schedules w_m(t)
# --------------------------------------------------------------------------------------


def as_schedule(schedule: Any) -> Any:
    """A :class:`reschrom.theory.schedules.Schedule` from a schedule or a config mapping."""
    from reschrom.theory.schedules import Schedule, build_schedule

    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, Mapping):
        return build_schedule("model", schedule)
    raise GuidanceError(f"schedule: expected a Schedule or a mapping {{type: …}}, got {type(schedule).__name__}")


@dataclass
class Chromatography:
    """r_m(t) of a schedule (eq. 18 via Theorem 1, eq. 34–35) and each band's maximum over the
    schedule's time, on a grid of ``n_t`` points of t_frac ∈ [0, 1]; cached per level count."""

    schedule: Any
    kernel: int = 2
    n_t: int = 2001
    _peak: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _peak_t: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.schedule = as_schedule(self.schedule)

    def r(self, t_frac: float, num_levels: int) -> np.ndarray:
        from reschrom.theory.resolution import chromatography

        return chromatography(self.schedule, float(np.clip(t_frac, 0.0, 1.0)), num_levels, self.kernel)

    def _table(self, num_levels: int) -> None:
        """max_t r_m and its argmax t*_m on the grid, computed once per level count."""
        if num_levels not in self._peak:
            from reschrom.theory.resolution import chromatography

            grid = np.linspace(0.0, 1.0, self.n_t)
            r = chromatography(self.schedule, grid, num_levels, self.kernel)
            self._peak[num_levels] = r.max(axis=0)
            self._peak_t[num_levels] = grid[r.argmax(axis=0)]

    def peak(self, num_levels: int) -> np.ndarray:
        """max_t r_m(t) per level m, shape (M,)."""
        self._table(num_levels)
        return self._peak[num_levels]

    def peak_time(self, num_levels: int) -> np.ndarray:
        """t*_m = argmax_t r_m(t) per level m on the grid, shape (M,) (the coarsest band's is
        t = 1: its share of the formation is largest at pure noise)."""
        self._table(num_levels)
        return self._peak_t[num_levels]

    def formed(self, t_frac: float, num_levels: int) -> np.ndarray:
        """r_m(t) / max_t r_m ∈ [0, 1]: how much band m is being formed at t, relative to its peak."""
        return self.r(t_frac, num_levels) / self.peak(num_levels)


@dataclass
class BandRule:
    """ε̃ = ε_u + Σ_m w_m(t) g^(m) with w_m(t) from ``method`` (module docstring).

    ``scale`` is w; ``scales`` the per-band scales of ``bands`` (finest first); ``window`` the
    t_frac window of ``interval``; ``power`` p of ``chroma``; ``share`` θ of ``chroma_window``
    and ``chroma_onset``; ``schedule`` the model's schedule (a
    :class:`reschrom.theory.schedules.Schedule` or a config mapping), needed by the
    chromatography rules.
    """

    method: str
    scale: float = 5.0
    scales: Sequence[float] | None = None
    window: Sequence[float] | None = None
    power: float = 1.0
    share: float | None = None  # None: 0.5 (chroma_window), 0.3 (chroma_onset)
    schedule: Any = None
    kernel: int = 2

    def __post_init__(self) -> None:
        if self.method not in BAND_METHODS:
            raise GuidanceError(f"method: {self.method!r} is not a band rule; allowed: {', '.join(BAND_METHODS)}")
        self.scale = check_scale(self.scale)
        if self.method == "bands":
            if not self.scales:
                raise GuidanceError("scales: the bands method needs one scale per band")
            self.scales = [check_scale(s, "scales") for s in self.scales]
        if self.method == "interval":
            self.window = check_window(self.window if self.window is not None else (0.0, 1.0))
        if self.method == "chroma":
            if not (float(self.power) >= 0 and math.isfinite(float(self.power))):
                raise GuidanceError(f"power: {self.power!r} must be ≥ 0")
        if self.share is None:
            self.share = default_share(self.method)
        if self.method in ("chroma_window", "chroma_onset") and not 0.0 <= float(self.share) <= 1.0:
            raise GuidanceError(f"share: {self.share!r} lies outside [0, 1]")
        self.chrom = None
        self._cache: dict[tuple[float, int], np.ndarray] = {}
        if self.method in CHROMA_METHODS:
            if self.schedule is None:
                raise GuidanceError(f"schedule: the {self.method} rule needs the model's schedule")
            self.chrom = Chromatography(self.schedule, self.kernel)

    def scales_at(self, t_frac: float, num_levels: int) -> np.ndarray:
        """w_m(t) for m = 0 (finest) … M−1 (coarsest), float64 (M,)."""
        w, M = self.scale, int(num_levels)
        if self.method == "cfg":
            return np.full(M, w)
        if self.method == "interval":
            lo, hi = self.window
            return np.full(M, w if lo <= t_frac <= hi else 1.0)
        if self.method == "bands":
            if len(self.scales) != M:
                raise GuidanceError(f"scales: {len(self.scales)} band scales for a model with {M} bands")
            return np.asarray(self.scales, dtype=np.float64)
        key = (float(t_frac), M)
        if key not in self._cache:  # a sampler's grid repeats over batches and seeds
            f = self.chrom.formed(t_frac, M)
            if self.method == "chroma":
                self._cache[key] = 1.0 + (w - 1.0) * f ** float(self.power)
            elif self.method == "chroma_window":
                self._cache[key] = np.where(f >= float(self.share), w, 1.0)
            else:  # chroma_onset: formed and not yet past the band's peak; a band peaking at
                # t = 1 (the coarsest) has no rising flank inside the schedule: never guided
                t_peak = self.chrom.peak_time(M)
                rising = (float(np.clip(t_frac, 0.0, 1.0)) >= t_peak) & (t_peak < 1.0)
                self._cache[key] = np.where((f >= float(self.share)) & rising, w, 1.0)
        return self._cache[key].copy()

    def __call__(
        self,
        pred_cond: torch.Tensor,
        pred_uncond: torch.Tensor,
        t_frac: float,
        step: int | None = None,
        num_steps: int | None = None,
        timestep: Any = None,
    ) -> torch.Tensor:
        from reschrom.theory.resolution import num_levels

        w = self.scales_at(float(t_frac), num_levels(pred_cond.shape[-1], self.kernel))
        g = pred_cond - pred_uncond
        if np.all(w == w[0]):  # one scale for every band: eq. 5 itself (CFG, interval)
            return pred_uncond + float(w[0]) * g
        return pred_uncond + band_scale(g, w.tolist(), self.kernel)


@dataclass
class DiffusersGuiderRule:
    """A diffusers guider (``BaseGuidance``: FDG, APG, CFG, …) as a rule: its ``set_state``
    then ``forward(pred_cond, pred_uncond).pred`` on the two predictions of the step."""

    guider: Any

    def __call__(
        self,
        pred_cond: torch.Tensor,
        pred_uncond: torch.Tensor,
        t_frac: float,
        step: int | None = None,
        num_steps: int | None = None,
        timestep: Any = None,
    ) -> torch.Tensor:
        self.guider.set_state(step=0 if step is None else int(step), num_inference_steps=num_steps, timestep=timestep)
        return self.guider.forward(pred_cond=pred_cond, pred_uncond=pred_uncond).pred


def _quiet_guider(cls: Any, **kwargs: Any) -> Any:
    """A diffusers guider without its "experimental feature" warning on every construction."""
    from diffusers.utils import logging as dlog

    log = dlog.get_logger("diffusers.guiders.guider_utils")
    old = log.level
    log.setLevel(40)
    try:
        return cls(**kwargs)
    finally:
        log.setLevel(old)


def make_rule(method: str, scale: float | Sequence[float], schedule: Any = None, kernel: int = 2, **params: Any) -> Any:
    """The rule of ``method`` (:data:`METHODS`) at ``scale`` with its ``params``.

    ``fdg``: ``scale`` is [w_high, w_low] (diffusers' order: finest Laplacian level first);
    ``apg``: ``eta`` (parallel component weight, default 0) and ``rescale`` (norm threshold,
    default 15). ``bands``: ``scale`` is the list of per-band scales. Others: module docstring.
    """
    if method not in METHODS:
        raise GuidanceError(f"method: {method!r} is unknown; allowed: {', '.join(METHODS)}")
    if method == "fdg":
        from diffusers.guiders import FrequencyDecoupledGuidance

        ws = [check_scale(s) for s in (scale if isinstance(scale, Sequence) else [scale, scale])]
        if len(ws) < 2:
            raise GuidanceError(f"scale: fdg needs [w_high, w_low], got {list(ws)!r}")
        return DiffusersGuiderRule(_quiet_guider(FrequencyDecoupledGuidance, guidance_scales=ws))
    if method == "apg":
        from diffusers.guiders import AdaptiveProjectedGuidance

        return DiffusersGuiderRule(
            _quiet_guider(
                AdaptiveProjectedGuidance,
                guidance_scale=check_scale(scale),
                eta=float(params.get("eta", 0.0)),
                adaptive_projected_guidance_rescale=float(params.get("rescale", 15.0)),
            )
        )
    if method == "bands":
        return BandRule("bands", scale=1.0, scales=list(scale), kernel=kernel)
    return BandRule(
        method,
        scale=float(scale),
        window=params.get("window"),
        power=float(params.get("power", 1.0)),
        share=params.get("share"),
        schedule=schedule,
        kernel=kernel,
    )
