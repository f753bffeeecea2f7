"""Per-step capture of the classifier-free-guidance term of any diffusers CFG pipeline.

:class:`GuidanceProbe` attaches a forward hook to a pipeline's denoiser (``pipe.unet``) and
leaves the pipeline's own loop untouched. Diffusers' CFG pipelines (``IFPipeline``,
``StableDiffusionPipeline``, and :class:`reschrom.oracle.OraclePipeline`) call the denoiser
once per step on the batch ``torch.cat([x] * 2)`` with ``torch.cat([negative, prompt])``
embeddings, and split its output with ``chunk(2)`` into (unconditional, conditional); IF's
UNet outputs 2C channels of which the first C are ε (the rest is the learned variance). The
probe does the same split and records, per step and per sample, on the denoiser's device:

* the timestep t,
* the band energies (eq. 19) ‖g^(m)‖², ‖ε_cond^(m)‖², ‖ε_uncond^(m)‖² of the CFG term
  g = ε(x,t;c) − ε(x,t) and of both predictions, for every level m,
* optionally (``keep_tensors=True``) the float16 tensors x_t, ε_uncond, ε_cond, for a
  safetensors dump.

Per-step results stay device tensors; :meth:`GuidanceProbe.result` moves them to the host
once. The hook returns nothing, so the pipeline's output is bitwise unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from reschrom import pyramid, theory

ENERGY_KINDS = ("guidance", "cond", "uncond")
"""Order of the energy axis: g, ε_cond, ε_uncond."""

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
"""The contract of ``results/guidance/{model}/{prompt_id}.parquet`` (DESIGN.md)."""


@dataclass
class ProbeResult:
    """What a probe recorded, on the host.

    ``timesteps`` (S,) the denoiser's timestep per step; ``energies`` (S, 3, B, M) float64 with
    axis 1 in :data:`ENERGY_KINDS` order; ``tensors`` (only with ``keep_tensors``) maps
    ``x_t``, ``eps_uncond``, ``eps_cond`` to float16 arrays (S, B, C, H, W).
    """

    timesteps: np.ndarray
    energies: np.ndarray
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.energies.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.energies.shape[2])

    @property
    def num_levels(self) -> int:
        return int(self.energies.shape[3])

    def relative(self, kind: str = "guidance") -> np.ndarray:
        """r̃_m(t) of eq. 19 for one energy kind, shape (S, B, M); rows sum to 1."""
        e = self.energies[:, ENERGY_KINDS.index(kind)]
        return e / np.maximum(e.sum(-1, keepdims=True), np.finfo(np.float64).tiny)


def _first(args: tuple, kwargs: dict, i: int, name: str) -> Any:
    if len(args) > i:
        return args[i]
    if name in kwargs:
        return kwargs[name]
    raise TypeError(f"denoiser called without {name!r}")


def _output_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    if hasattr(output, "sample"):
        return output.sample
    raise TypeError(f"cannot read the denoiser output of type {type(output).__name__}")


class GuidanceProbe(contextlib.AbstractContextManager):
    """Forward hook on a CFG pipeline's denoiser recording the guidance term per step.

    Use as a context manager::

        with GuidanceProbe(pipe.unet) as probe:
            pipe(prompt, guidance_scale=7.0, ...)
        res = probe.result()

    ``kernel`` is the pooling kernel of the bands (eq. 19). ``keep_tensors`` keeps copies of
    x_t, ε_uncond and ε_cond in ``tensor_dtype`` (float16 by default, for :func:`save_tensors`).
    The denoiser must be called with a CFG batch [uncond, cond] (guidance scale > 1); an odd
    batch raises.
    """

    def __init__(
        self,
        denoiser: torch.nn.Module,
        kernel: int = 2,
        keep_tensors: bool = False,
        tensor_dtype: torch.dtype = torch.float16,
    ) -> None:
        self.denoiser = denoiser
        self.kernel = int(kernel)
        self.keep_tensors = bool(keep_tensors)
        self.tensor_dtype = tensor_dtype
        self._handle: Any = None
        self._t: list[torch.Tensor] = []
        self._e: list[torch.Tensor] = []
        self._x: list[torch.Tensor] = []
        self._u: list[torch.Tensor] = []
        self._c: list[torch.Tensor] = []

    # -- attach / detach ------------------------------------------------------------------
    def attach(self) -> GuidanceProbe:
        if self._handle is not None:
            raise RuntimeError("probe is already attached")
        self._handle = self.denoiser.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> GuidanceProbe:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def reset(self) -> None:
        """Forget everything recorded so far (keep the hook)."""
        for buf in (self._t, self._e, self._x, self._u, self._c):
            buf.clear()

    # -- the hook -------------------------------------------------------------------------
    @torch.no_grad()
    def _hook(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        sample = _first(args, kwargs, 0, "sample")
        timestep = _first(args, kwargs, 1, "timestep")
        out = _output_tensor(output)
        n = out.shape[0]
        if n % 2:
            raise ValueError(
                f"GuidanceProbe: denoiser batch {n} is odd; the pipeline is not doing CFG "
                "(use guidance_scale > 1)"
            )
        c = sample.shape[1]
        eps = out[:, :c]  # IF: the remaining C channels are the learned variance
        eps_uncond, eps_cond = eps.chunk(2)
        g = eps_cond - eps_uncond
        e = torch.stack(
            [
                pyramid.band_energies(g, self.kernel),
                pyramid.band_energies(eps_cond, self.kernel),
                pyramid.band_energies(eps_uncond, self.kernel),
            ]
        )
        self._e.append(e.detach())
        # the timestep stays where the pipeline keeps it (a device tensor for IF/SD: no sync)
        t = timestep.detach() if isinstance(timestep, torch.Tensor) else torch.tensor(float(timestep))
        self._t.append(t.reshape(-1)[:1])
        if self.keep_tensors:
            self._x.append(sample[: n // 2].detach().to(self.tensor_dtype).clone())
            self._u.append(eps_uncond.detach().to(self.tensor_dtype).clone())
            self._c.append(eps_cond.detach().to(self.tensor_dtype).clone())

    # -- results --------------------------------------------------------------------------
    def result(self) -> ProbeResult:
        """Everything recorded, moved to the host in one transfer per quantity."""
        if not self._e:
            raise RuntimeError("GuidanceProbe recorded no denoiser call")
        energies = torch.stack(self._e).to("cpu", torch.float64).numpy()
        ts = torch.cat([t.to("cpu", torch.float64) for t in self._t]).numpy()
        tensors: dict[str, torch.Tensor] = {}
        if self.keep_tensors:
            tensors = {
                "x_t": torch.stack(self._x).cpu(),
                "eps_uncond": torch.stack(self._u).cpu(),
                "eps_cond": torch.stack(self._c).cpu(),
            }
        return ProbeResult(ts, energies, tensors)


def save_tensors(result: ProbeResult, path: str | os.PathLike) -> None:
    """Write the float16 tensors of a probe (``keep_tensors=True``) as safetensors, atomically."""
    from safetensors.torch import save_file

    from reschrom.io import atomic_path

    if not result.tensors:
        raise ValueError("the probe kept no tensors (keep_tensors=False)")
    data = {k: v.contiguous() for k, v in result.tensors.items()}
    data["timesteps"] = torch.as_tensor(result.timesteps)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(data, str(tmp))


@contextlib.contextmanager
def probing(pipe: Any, kernel: int = 2, keep_tensors: bool = False) -> Iterator[GuidanceProbe]:
    """``with probing(pipe) as probe:`` — a :class:`GuidanceProbe` on ``pipe.unet``."""
    with GuidanceProbe(pipe.unet, kernel, keep_tensors) as probe:
        yield probe


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
    """One row per (sample, step, m): the contract of ``results/guidance/...`` (docs/DESIGN.md).

    ``t`` is the denoiser's own time (a DDPM step index, or σ of a flow-matching / EDM model).
    Either ``alphas_cumprod`` (a DDPM table: ``t_frac = t/(T-1)``, ᾱ = table[t]) or the per-step
    ``alpha_bar`` and ``t_frac`` arrays (length S; any schedule) give ``t_frac`` (1 = pure noise)
    and the extra column ``alpha_bar`` = ᾱ_t (so the theory r_m(t) needs no scheduler, Theorem 1).
    ``resolution`` is the side of the probed tensor (e.g. 28 gives levels 28, 14, 7); None assumes
    a power of the kernel, n^(M-1).
    """
    S, _, B, M = result.energies.shape
    t = np.asarray(result.timesteps, dtype=np.float64)
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
        }
    )
    return df.sort_values(["sample", "step", "m"], kind="stable").reset_index(drop=True)
