"""Per-step capture of the classifier-free-guidance term of any diffusers CFG pipeline.

:class:`GuidanceProbe` attaches a forward hook to a pipeline's denoiser (``pipe.unet`` or
``pipe.transformer``, through :class:`reschrom.models.adapters.PipelineAdapter`) and leaves the
pipeline's own loop untouched. Diffusers' CFG pipelines (``IFPipeline``,
``StableDiffusionPipeline``, ``StableDiffusion3Pipeline`` and
:class:`reschrom.models.oracle.OraclePipeline`) call the denoiser once per step on the batch
``torch.cat([x] * 2)`` with ``torch.cat([negative, prompt])`` embeddings, and split its output
with ``chunk(2)`` into (unconditional, conditional). The probe does the same split, converts
both halves to ε in the VP convention of eq. 1 (IF: the first C of 2C channels; v and flow
velocities converted by the adapter) and records, per step and per sample, on the denoiser's
device:

* the timestep, the schedule's own time t (DDPM step, or σ), t_frac and ᾱ_t of the step,
* the band energies (eq. 19) ‖g^(m)‖², ‖ε_cond^(m)‖², ‖ε_uncond^(m)‖² of the CFG term
  g = ε(x,t;c) − ε(x,t) and of both predictions, for every level m (g in ε units for every
  family: √ᾱ(v_c − v_u) for v prediction, (1−σ)(u_c − u_u) for flow matching),
* optionally (``keep_tensors=True``) the float16 tensors x_t (the denoiser's input: x_flow for
  flow matching), ε_uncond, ε_cond, for a safetensors dump.

True-CFG loops (Flux with ``true_cfg_scale`` and a negative prompt, Qwen-Image, Lumina 2,
CogView4) call the denoiser once per condition on the same x_t tensor: the probe pairs the two
calls of a step by that tensor's identity, in the loop's documented order (conditional first,
:data:`reschrom.models.families.TWO_CALL_PIPELINES`), holding a reference to the first call's output
(no copy) until the second arrives. Packed latents (Flux, Qwen-Image) are unpacked to
(B, C, H, W) by the pipeline's own ``_unpack_latents`` before any band is computed;
``ProbeResult.grid`` (and the dump's ``grid_channels``, ``grid_height``, ``grid_width``) says
which grid was measured.

Per-step results stay device tensors; :meth:`GuidanceProbe.result` moves them to the host
once. The hook returns nothing, so the pipeline's output is bitwise unchanged.

Where the CFG term is zero (a prompt naming nothing the model tells apart; the oracle once its
concept posterior has chosen), r̃ of eq. 19 is undefined: :meth:`ProbeResult.defined` marks
those (step, sample) rows, :meth:`ProbeResult.relative` warns with their count
(:class:`~reschrom.measure.guidance.UndefinedStepsWarning`) and the dump's ``defined`` column
says it row by row.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from reschrom.measure.guidance import UNDEFINED_RATIO, warn_undefined
from reschrom.models.adapters import PipelineAdapter
from reschrom.theory import pyramid
from reschrom.theory import resolution as theory

__all__ = [
    "ENERGY_KINDS",
    "GuidanceProbe",
    "ProbeResult",
    "guidance_frame",
    "save_tensors",
]

ENERGY_KINDS = ("guidance", "cond", "uncond")
"""Order of the energy axis: g, ε_cond, ε_uncond."""


@dataclass
class ProbeResult:
    """What a probe recorded, on the host.

    ``timesteps`` (S,) the denoiser's timestep per step (σ·T for flow matching); ``energies``
    (S, 3, B, M) float64 with axis 1 in :data:`ENERGY_KINDS` order, in ε units; ``tensors``
    (only with ``keep_tensors``) maps ``x_t``, ``eps_uncond``, ``eps_cond`` to float16 arrays
    (S, B, C, H, W); ``alpha_bar`` (S,) ᾱ of each step, ``t_frac`` (S,) its t_frac (t/(T−1),
    or σ for flow matching), ``t_native`` (S,) the schedule's own time (DDPM step, or σ);
    ``resolution`` the side of the probed tensor (pixels for IF and the oracle, latents for
    SD/SD3); ``grid`` (C, H, W) of the measured tensor (packed latents unpacked). None when
    unknown (a result built by hand).
    """

    timesteps: np.ndarray
    energies: np.ndarray
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    alpha_bar: np.ndarray | None = None
    t_frac: np.ndarray | None = None
    t_native: np.ndarray | None = None
    resolution: int | None = None
    grid: tuple[int, int, int] | None = None

    @property
    def num_steps(self) -> int:
        return int(self.energies.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.energies.shape[2])

    @property
    def num_levels(self) -> int:
        return int(self.energies.shape[3])

    def defined(self, undefined_ratio: float = UNDEFINED_RATIO) -> np.ndarray:
        """(S, B) bool: where r̃(t) of eq. 19 is defined, i.e. the CFG term is not zero:
        ‖g‖² > ``undefined_ratio`` · ‖ε_cond‖² (the aggregation's own rule). It is not where
        the prompt changes nothing (it names nothing the model tells apart, e.g. a prompt
        naming no concept of the oracle) or the model's guidance vanishes (the oracle once its
        concept posterior has chosen; a flow model at σ = 1)."""
        tot = self.energies.sum(-1)  # (S, 3, B)
        return tot[:, 0] > undefined_ratio * tot[:, 1]

    @property
    def num_defined(self) -> int:
        """How many (step, sample) pairs have a defined r̃ (:meth:`defined`)."""
        return int(self.defined().sum())

    def relative(self, kind: str = "guidance", *, warn: bool = True) -> np.ndarray:
        """r̃_m(t) of eq. 19 for one energy kind, shape (S, B, M); each row sums to 1 where the
        term is nonzero and is 0 where it is zero. For the CFG term (``kind="guidance"``) "zero"
        is the aggregation's rule (:meth:`defined`: ‖g‖² at most rounding noise of ‖ε_cond‖²),
        and those rows are counted: an :class:`UndefinedStepsWarning` says how many of the S·B
        (step, sample) rows are undefined, unless ``warn=False``."""
        e = self.energies[:, ENERGY_KINDS.index(kind)]
        r = e / np.maximum(e.sum(-1, keepdims=True), np.finfo(np.float64).tiny)
        if kind == "guidance":
            ok = self.defined()
            if warn:
                warn_undefined(ok, what="GuidanceProbe")
            r = np.where(ok[..., None], r, 0.0)
        return r


class GuidanceProbe(contextlib.AbstractContextManager):
    """Forward hook on a CFG pipeline's denoiser recording the guidance term per step.

    Use as a context manager::

        with GuidanceProbe(pipe) as probe:
            pipe(prompt, guidance_scale=7.0, ...)
        res = probe.result()

    ``pipe`` is the pipeline or its :class:`~reschrom.models.adapters.PipelineAdapter`. ``kernel`` is
    the pooling kernel of the bands (eq. 19). ``keep_tensors`` keeps copies of x_t, ε_uncond and
    ε_cond in ``tensor_dtype`` (float16 by default, for :func:`save_tensors`). The denoiser must
    be called with a CFG batch [uncond, cond] (guidance scale > 1), or, for true-CFG loops,
    twice per step on the same x_t; an odd batch, or a step with one call, raises one line.
    Auxiliary denoiser calls (SD3's skip-layer guidance) are not recorded.
    """

    def __init__(
        self,
        pipe: Any,
        kernel: int = 2,
        keep_tensors: bool = False,
        tensor_dtype: torch.dtype = torch.float16,
    ) -> None:
        if isinstance(pipe, torch.nn.Module) and not isinstance(pipe, PipelineAdapter):
            raise TypeError(
                f"GuidanceProbe takes the pipeline (or its PipelineAdapter), not its denoiser "
                f"{type(pipe).__name__}: use GuidanceProbe(pipe)"
            )
        self.adapter = PipelineAdapter.for_pipeline(pipe)
        self.denoiser = self.adapter.denoiser
        self.kernel = int(kernel)
        self.keep_tensors = bool(keep_tensors)
        self.tensor_dtype = tensor_dtype
        self._handle: Any = None
        self._t: list[torch.Tensor] = []
        self._e: list[torch.Tensor] = []
        self._x: list[torch.Tensor] = []
        self._u: list[torch.Tensor] = []
        self._c: list[torch.Tensor] = []
        self._resolution: int | None = None
        self._grid: tuple[int, int, int] | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # two-call: (x_t, first output)
        self._geometry: Any = None

    # -- attach / detach ------------------------------------------------------------------
    def attach(self) -> GuidanceProbe:
        if self._handle is not None:
            raise RuntimeError("probe is already attached")
        self._handle = self.denoiser.register_forward_hook(self._hook, with_kwargs=True)
        self._geometry = self.adapter.tracking_geometry()
        self._geometry.__enter__()
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._geometry is not None:
            self._geometry.__exit__(None, None, None)
            self._geometry = None

    def __enter__(self) -> GuidanceProbe:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def reset(self) -> None:
        """Forget everything recorded so far (keep the hook)."""
        for buf in (self._t, self._e, self._x, self._u, self._c):
            buf.clear()
        self._pending = None

    # -- the hook -------------------------------------------------------------------------
    @torch.no_grad()
    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        a = self.adapter
        if not a.is_guidance_call(args, kwargs):
            return
        sample = a.sample(args, kwargs)
        out = a.output_tensor(output)
        n = out.shape[0]
        if a.two_call:  # true CFG: pair the two calls of a step on the same x_t tensor
            pend = self._pending
            if pend is None or pend[0] is not sample:
                if pend is not None:  # the previous step's x_t got one call: no CFG there
                    self._pending = None
                    raise ValueError(f"GuidanceProbe: {a.cfg_off(n)}")
                self._pending = (sample, out)
                return
            self._pending = None
            first = pend[1]
            out_c, out_u = (first, out) if a.cond_first else (out, first)
            x = a.unpack(sample)  # packed (B, seq, 4C) tokens → (B, C, H, W)
            out_c, out_u = a.unpack(out_c), a.unpack(out_u)
            t = a.step_values(a.timestep(args, kwargs))
            self._record(x, out_u, out_c, t)
            return
        off = a.cfg_off(n)  # an odd batch, or the pipeline's own do_classifier_free_guidance False
        if off is not None:
            raise ValueError(f"GuidanceProbe: {off}")
        # the timestep stays where the pipeline keeps it (a device tensor: no sync)
        t = a.step_values(a.timestep(args, kwargs))  # (timestep, t_native, t_frac, ᾱ)
        c = sample.shape[1]
        x = sample[: n // 2]
        out_u, out_c = out[:, :c].chunk(2)  # IF: the remaining C channels are the learned variance
        self._record(x, out_u, out_c, t)

    def _record(self, x: torch.Tensor, out_u: torch.Tensor, out_c: torch.Tensor, t: torch.Tensor) -> None:
        """Band energies (eq. 19) of g, ε_cond, ε_uncond of one step from the two raw outputs on
        the (B, C, H, W) grid x."""
        a = self.adapter
        c = x.shape[1]
        out_u, out_c = out_u[:, :c], out_c[:, :c]
        t0 = t[:1]  # one tensor for the three conversions (the adapter remembers its σ)
        g = a.guidance_eps(out_u, out_c, t0)  # ε_c − ε_u without forming ε (no cancellation)
        eps_uncond = a.to_eps(x, out_u, t0)
        eps_cond = a.to_eps(x, out_c, t0)
        # one batched pyramid pass over the three tensors (one set of pooling kernels per step)
        b = g.shape[0]
        e = pyramid.band_energies(torch.cat([g, eps_cond, eps_uncond]), self.kernel)  # (cat promotes dtypes)
        e = e.view(3, b, -1)
        self._e.append(e.detach())
        self._t.append(t)
        self._resolution = int(x.shape[-1])
        self._grid = (int(x.shape[1]), int(x.shape[-2]), int(x.shape[-1]))
        if self.keep_tensors:
            self._x.append(x.detach().to(self.tensor_dtype).clone())
            self._u.append(eps_uncond.detach().to(self.tensor_dtype).clone())
            self._c.append(eps_cond.detach().to(self.tensor_dtype).clone())

    # -- results --------------------------------------------------------------------------
    def result(self) -> ProbeResult:
        """Everything recorded, moved to the host in one transfer per quantity."""
        if self._pending is not None:  # a two-call loop's last step got one call
            self._pending = None
            raise ValueError(f"GuidanceProbe: {self.adapter.cfg_off(1)}")
        if not self._e:
            raise RuntimeError("GuidanceProbe recorded no denoiser call")
        energies = torch.stack(self._e).to("cpu", torch.float64).numpy()
        steps = torch.stack(self._t).to("cpu", torch.float64).numpy()  # (S, 4)
        tensors: dict[str, torch.Tensor] = {}
        if self.keep_tensors:
            tensors = {
                "x_t": torch.stack(self._x).cpu(),
                "eps_uncond": torch.stack(self._u).cpu(),
                "eps_cond": torch.stack(self._c).cpu(),
            }
        return ProbeResult(
            steps[:, 0].copy(),
            energies,
            tensors,
            alpha_bar=steps[:, 3].copy(),
            t_frac=steps[:, 2].copy(),
            t_native=steps[:, 1].copy(),
            resolution=self._resolution,
            grid=self._grid,
        )


def save_tensors(result: ProbeResult, path: str | os.PathLike) -> None:
    """Write the float16 tensors of a probe (``keep_tensors=True``) as safetensors, atomically
    (with ``timesteps`` and, when known, ``alpha_bar`` and ``t_frac`` per step)."""
    from safetensors.torch import save_file

    from reschrom.io import atomic_path

    if not result.tensors:
        raise ValueError("the probe kept no tensors (keep_tensors=False)")
    data = {k: v.contiguous() for k, v in result.tensors.items()}
    data["timesteps"] = torch.as_tensor(result.timesteps)
    for key in ("alpha_bar", "t_frac"):
        v = getattr(result, key)
        if v is not None:
            data[key] = torch.as_tensor(np.ascontiguousarray(v))
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(data, str(tmp))


def guidance_frame(
    result: ProbeResult,
    *,
    model: str,
    prompt_id: str,
    prompt: str,
    seed: int,
    alphas_cumprod: np.ndarray | None = None,
    alpha_bar: np.ndarray | None = None,
    t_frac: np.ndarray | None = None,
    sample_offset: int = 0,
    kernel: int = 2,
    resolution: int | None = None,
) -> pd.DataFrame:
    """One row per (sample, step, m): the contract of ``results/guidance/...`` (docs/DESIGN.md),
    then the extra columns ``alpha_bar`` and ``defined`` (bool, the same for every m of a
    (sample, step): whether r̃ of eq. 19 is defined there, :meth:`ProbeResult.defined`).

    ``t`` is the denoiser's own time (a DDPM step index, or σ of a flow-matching / EDM model:
    ``result.t_native`` where the probe recorded it). The result's own per-step ``alpha_bar``
    and ``t_frac``, or ``alphas_cumprod`` (a DDPM table: ``t_frac = t/(T-1)``, ᾱ = table[t]) or the per-step
    ``alpha_bar`` and ``t_frac`` arrays (length S; any schedule) give ``t_frac`` (1 = pure noise)
    and the extra column ``alpha_bar`` = ᾱ_t (so the theory r_m(t) needs no scheduler, Theorem 1).
    ``resolution`` is the side of the probed tensor (e.g. 28 gives levels 28, 14, 7); None assumes
    a power of the kernel, n^(M-1). Where the result knows its grid, the extra columns
    ``grid_channels``, ``grid_height``, ``grid_width`` say which (C, H, W) tensor was measured
    (packed latents: the unpacked grid).
    """
    S, _, B, M = result.energies.shape
    t = np.asarray(result.timesteps if result.t_native is None else result.t_native, dtype=np.float64)
    if alpha_bar is None and t_frac is None and result.alpha_bar is not None and result.t_frac is not None:
        alpha_bar, t_frac = result.alpha_bar, result.t_frac
    if alpha_bar is None or t_frac is None:
        if alphas_cumprod is None:
            raise ValueError("guidance_frame needs alphas_cumprod or per-step alpha_bar and t_frac")
        ac = np.asarray(alphas_cumprod, dtype=np.float64)
        T = len(ac)
        ti = np.clip(np.rint(t).astype(np.int64), 0, T - 1)
        alpha_bar, t_frac = ac[ti], t / (T - 1)
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64).reshape(S)
    t_frac = np.asarray(t_frac, dtype=np.float64).reshape(S)
    res = theory.level_resolutions(kernel ** (M - 1) if resolution is None else int(resolution), kernel)
    if len(res) != M:
        raise ValueError(f"guidance_frame: resolution {resolution} has {len(res)} levels but the probe recorded {M}")
    ss, bb, mm = np.meshgrid(np.arange(S), np.arange(B), np.arange(M), indexing="ij")
    ss, bb, mm = ss.ravel(), bb.ravel(), mm.ravel()
    e = result.energies  # (S, 3, B, M)
    df = pd.DataFrame(
        {
            "model": model,
            "prompt_id": prompt_id,
            "prompt": prompt,
            "seed": np.int64(seed),
            "sample": (bb + sample_offset).astype(np.int32),
            "step": ss.astype(np.int32),
            "t": t[ss],
            "t_frac": t_frac[ss],
            "m": mm.astype(np.int32),
            "resolution": res[mm].astype(np.int32),
            "energy_guidance": e[ss, 0, bb, mm],
            "energy_cond": e[ss, 1, bb, mm],
            "energy_uncond": e[ss, 2, bb, mm],
            "alpha_bar": alpha_bar[ss],
            "defined": result.defined()[ss, bb],
        }
    )
    if result.grid is not None:
        for name, v in zip(("grid_channels", "grid_height", "grid_width"), result.grid):
            df[name] = np.int32(v)
    return df.sort_values(["sample", "step", "m"], kind="stable").reset_index(drop=True)
