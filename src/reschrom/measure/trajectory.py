"""The posterior mean x̂0 along sampling trajectories and its spectrum (paper Fig. 1, eq. 7).

:func:`capturing_x0` wraps the pipeline's ``scheduler.step`` for the duration of a block (the
pipeline's loop is not copied): at every step it receives the (guided) model output and x_t and
computes the posterior mean by eq. 7,

    x̂0 = (x_t - √(1-ᾱ_t) ε(x_t, t)) / √ᾱ_t,

unclipped and unthresholded (IF's scheduler thresholds its own ``pred_original_sample``; the
paper's x̂0 = E[x0|x_t] is not). ``v_prediction`` and ``sample`` models are converted to x̂0 the
same way, flow-matching models (SD3) give x̂0 = x_flow − σ·u; all through
:class:`reschrom.models.adapters.PipelineAdapter`. IF's learned-variance channels (the last C of 2C)
are dropped.

:func:`x0_spectra` runs N samples through a pipeline and averages, per step, the RAPSD
(``reschrom.theory.spectra.rapsd``) of the change x̂0(t_k) - x̂0(t_{k-1}) between consecutive steps:
coarse-to-fine generation shows as power moving from low to high frequencies as t → 0.
For latent models (Stable Diffusion) x̂0 and its spectrum live in latent space; the snapshots
are decoded by the VAE. The same function takes a ``kind: module`` model (a
:class:`reschrom.models.module.ModuleModel`), sampled by the project's DDIM with CFG, x̂0 by
eq. 7 of its guided ε at every step.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from reschrom.theory.spectra import rapsd

SPECTRA_COLUMNS = ["model", "step", "t", "t_frac", "k", "power", "n_samples"]
"""The contract of ``results/spectra/{model}.parquet``: one row per (step, frequency k)."""


def posterior_mean(
    x_t: torch.Tensor, model_output: torch.Tensor, alpha_bar: float, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """x̂0 = E[x0|x_t] from a model output (eq. 7 for ε; v and sample predictions converted):
    ``reschrom.theory.levels.posterior_mean`` at the scalar ``alpha_bar``."""
    from reschrom.theory.levels import posterior_mean as _posterior_mean

    return _posterior_mean(x_t, model_output, float(alpha_bar), prediction_type)


@dataclass
class X0Capture:
    """What :func:`capturing_x0` recorded: per scheduler step, the timestep, the schedule's own
    time ``t_native`` (DDPM step, or σ), ``t_frac`` (t/(T−1), or σ), and x_t and x̂0 (on the
    host only if ``keep`` says so; otherwise the callback ``on_step`` consumes them)."""

    timesteps: list[float] = field(default_factory=list)
    x_t: list[torch.Tensor] = field(default_factory=list)
    x0: list[torch.Tensor] = field(default_factory=list)
    t_native: list[float] = field(default_factory=list)
    t_frac: list[float] = field(default_factory=list)


@contextlib.contextmanager
def capturing_x0(pipe: Any, on_step: Any = None, keep: bool = True) -> Iterator[X0Capture]:
    """Record x̂0 at every ``pipe.scheduler.step`` call inside the block.

    Through :class:`reschrom.models.adapters.PipelineAdapter`: eq. 7 for DDPM-family schedulers
    (ε, v and x0 predictions converted; IF's variance channels dropped), x̂0 = x_flow − σ·u for
    flow matching (``FlowMatchEulerDiscreteScheduler.step(u, σ·T, x_flow)``). ``on_step(t,
    x_t, x0)`` is called per step if given; ``keep`` stores x_t and x̂0 (float32, on their
    device) in the returned :class:`X0Capture`. The scheduler's ``step`` is restored on exit;
    the pipeline's outputs are unchanged.
    """
    from reschrom.models.adapters import PipelineAdapter

    adapter = PipelineAdapter.for_pipeline(pipe)
    sched = pipe.scheduler
    cap = X0Capture()
    original = sched.step
    had_instance_attr = "step" in vars(sched)

    # functools.wraps keeps step's signature visible to inspect: pipelines pass `generator`
    # to scheduler.step only if its signature names it (prepare_extra_step_kwargs); without
    # it the scheduler's noise would come from the global RNG and runs would not reproduce.
    @functools.wraps(original)
    def step(model_output, timestep, sample, *args, **kwargs):
        t = float(timestep.reshape(-1)[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        td = adapter.denoiser_timestep(t)  # the scheduler's clock → the denoiser's (σ for AuraFlow)
        # from what the scheduler receives: the guided output on the scheduler's clock (σ read
        # from its own sigmas for flow matching; Lumina 2's output already negated by its loop)
        x0 = adapter.unpack(adapter.x0_from_step(sample, model_output, t).float())
        x_t = adapter.unpack(sample)  # packed latents (Flux, Qwen-Image) → (B, C, H, W)
        if on_step is not None:
            on_step(t, x_t, x0)
        cap.timesteps.append(t)
        cap.t_native.append(float(adapter.t_native(td)))
        cap.t_frac.append(float(adapter.t_frac(td)))
        if keep:
            cap.x_t.append(x_t.detach().float())
            cap.x0.append(x0.detach())
        return original(model_output, timestep, sample, *args, **kwargs)

    sched.step = step
    geometry = adapter.tracking_geometry()
    geometry.__enter__()
    try:
        yield cap
    finally:
        geometry.__exit__(None, None, None)
        if had_instance_attr:
            sched.step = original
        else:  # back to the class method
            del sched.step


@dataclass
class SpectraResult:
    """Per-step mean RAPSD of x̂0 changes and the snapshots of the first sample."""

    timesteps: np.ndarray  # (S,) timestep of each scheduler step
    power: np.ndarray  # (S-1, K) mean RAPSD of x̂0(t_k) - x̂0(t_{k-1}), k = 1 … S-1
    n_samples: int
    snapshots: dict[str, torch.Tensor]  # x_t, x0: (S_snap, C, H, W); steps: (S_snap,)


def _sample_kwargs(pipe: Any) -> dict[str, Any]:
    if getattr(pipe, "vae", None) is not None:
        return {"output_type": "latent"}
    kw: dict[str, Any] = {"output_type": "np"}
    if "clean_caption" in inspect.signature(pipe.__call__).parameters:
        kw["clean_caption"] = False
    return kw


def snapshot_steps(num_steps: int, n_snapshots: int) -> list[int]:
    """Up to ``n_snapshots`` evenly spaced step indices of ``num_steps`` (first and last included)."""
    return sorted({int(round(v)) for v in np.linspace(0, num_steps - 1, max(1, min(n_snapshots, num_steps)))})


def x0_spectra(
    net: Any,
    prompts: Sequence[str],
    n_samples: int = 8,
    batch_size: int = 4,
    seed: int = 0,
    num_inference_steps: int = 50,
    guidance_scale: float = 4.0,
    n_snapshots: int = 6,
    device: torch.device | str | None = None,
) -> SpectraResult:
    """Average the RAPSD of x̂0 changes between consecutive steps over ``n_samples`` samples.

    ``net`` is any model of the registry (what :func:`reschrom.models.registry.load_model`
    returns), dispatched by :func:`reschrom.models.module.is_denoiser`: a diffusers pipeline
    runs its own loop under :func:`capturing_x0` (batch b drawn with a generator seeded
    ``seed + b`` on ``device``, default the pipeline's execution device; a latent model's x̂0
    snapshots are decoded by its VAE); a ``kind: module`` model is sampled by the project's DDIM
    (eq. 4) with CFG (eq. 5), x̂0 (eq. 7) of the guided ε at each step (batch b from
    :func:`reschrom.sampling.cfg.model_noise` with seed ``seed + b``; ``device`` must be the
    model's). Sample i uses prompt ``prompts[i % len(prompts)]``. ``timesteps`` are the
    schedule's native times (the DDPM step, or σ). Snapshots of x_t and x̂0 of sample 0 are
    kept at ``n_snapshots`` evenly spaced steps.
    """
    from reschrom.models.module import is_denoiser

    if n_samples < 1 or batch_size < 1:
        raise ValueError("n_samples and batch_size must be ≥ 1")
    if is_denoiser(net):
        if device is not None and torch.device(device) != net.device:
            raise ValueError(f"x0_spectra: device {device} is not the model's ({net.device})")
        run: _PipelineTrajectories | _DenoiserTrajectories = _DenoiserTrajectories(net, num_inference_steps, guidance_scale)
    else:
        run = _PipelineTrajectories(net, num_inference_steps, guidance_scale, device)
    total: torch.Tensor | None = None
    first = X0Capture()
    done = b = 0
    while done < n_samples:
        n = min(batch_size, n_samples - done)
        batch_prompts = [prompts[(done + j) % len(prompts)] for j in range(n)]
        spec, cap = run(batch_prompts, seed + b, keep=(b == 0))  # (S-1, K), summed over the batch
        total = spec if total is None else total + spec
        if b == 0:
            first = cap
        done += n
        b += 1
    assert total is not None
    idx = snapshot_steps(len(first.x0), n_snapshots)
    x_snap, x0_snap = run.snapshots(
        torch.stack([first.x_t[i][0].cpu() for i in idx]), torch.stack([first.x0[i][0].cpu() for i in idx])
    )
    return SpectraResult(
        timesteps=np.asarray(first.t_native, dtype=np.float64),
        power=(total / n_samples).numpy(),
        n_samples=n_samples,
        snapshots={
            "x_t": x_snap.contiguous(),
            "x0": x0_snap.contiguous(),
            "steps": torch.tensor(idx),
            "t_frac": torch.tensor(first.t_frac, dtype=torch.float64),
        },
    )


class _PipelineTrajectories:
    """The strategy of :func:`x0_spectra` for a diffusers pipeline: its own loop, x̂0 from
    :func:`capturing_x0` (through the adapter layer)."""

    def __init__(self, pipe: Any, num_inference_steps: int, guidance_scale: float, device: torch.device | str | None) -> None:
        self.pipe = pipe
        self.kw = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, **_sample_kwargs(pipe))
        self.dev = torch.device(device) if device is not None else pipe._execution_device

    def __call__(self, prompts: list[str], seed: int, keep: bool) -> tuple[torch.Tensor, X0Capture]:
        """The summed RAPSD of the x̂0 changes of one batch and, if ``keep``, its trajectory."""
        state: dict[str, Any] = {"prev": None, "spec": []}

        def on_step(t, x_t, x0):
            if state["prev"] is not None:
                state["spec"].append(rapsd((x0 - state["prev"]).float()).sum(0))
            state["prev"] = x0

        gen = torch.Generator(device=self.dev).manual_seed(seed)
        with torch.no_grad(), capturing_x0(self.pipe, on_step=on_step, keep=keep) as cap:
            self.pipe(prompt=prompts, generator=gen, **self.kw)
        return torch.stack(state["spec"]).double().cpu(), cap

    def snapshots(self, x_snap: torch.Tensor, x0_snap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A latent model's snapshots for display: x̂0 decoded by the VAE, x_t's first 3 channels."""
        vae = getattr(self.pipe, "vae", None)
        if vae is None:
            return x_snap, x0_snap
        with torch.no_grad():
            lat = x0_snap.to(self.dev, vae.dtype) / vae.config.scaling_factor
            x0_snap = vae.decode(lat).sample.float().cpu()
        return x_snap[:, :3], x0_snap


class _DenoiserTrajectories:
    """The strategy of :func:`x0_spectra` for a ``kind: module`` model: the project's DDIM
    (eq. 4) with CFG (eq. 5), x̂0 = eq. 7 of the guided ε (:func:`posterior_mean`)."""

    def __init__(self, den: Any, num_inference_steps: int, guidance_scale: float) -> None:
        self.den = den
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)

    def __call__(self, prompts: list[str], seed: int, keep: bool) -> tuple[torch.Tensor, X0Capture]:
        """The summed RAPSD of the x̂0 changes of one batch and its times (with x_t, x̂0 of the
        first sample if ``keep``)."""
        from reschrom.sampling.cfg import model_noise, sample_cfg

        den = self.den
        cap = X0Capture()
        state: dict[str, Any] = {"prev": None, "spec": []}

        def on_step(step, t_frac, alpha_bar, x_t, eps_u, eps_c, eps_g):
            x0 = posterior_mean(x_t.float(), eps_g.float(), float(alpha_bar))
            if state["prev"] is not None:
                state["spec"].append(rapsd((x0 - state["prev"]).float()).sum(0))
            state["prev"] = x0
            cap.t_frac.append(float(t_frac))
            if keep:
                cap.x_t.append(x_t[:1].float().cpu())
                cap.x0.append(x0[:1].cpu())

        n = len(prompts)
        sample_cfg(
            den, [den.encode(prompts)], den.null_condition(n), guidance_scale=self.guidance_scale,
            num_inference_steps=self.num_inference_steps, x_T=model_noise(den, n, seed, den.device), on_step=on_step,
        )
        cap.t_native = np.asarray(den.schedule.native_t(np.asarray(cap.t_frac)), dtype=np.float64).tolist()
        cap.timesteps = list(cap.t_native)
        return torch.stack(state["spec"]).double().cpu(), cap

    def snapshots(self, x_snap: torch.Tensor, x0_snap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x_snap, x0_snap


def spectra_frame(
    result: SpectraResult, model: str, num_train_timesteps: int | None = None, t_frac: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per (step, k): the contract of ``results/spectra/{model}.parquet``.

    ``step`` = k of the change x̂0(t_step) - x̂0(t_{step-1}) (1 … S-1), ``t`` its time in the
    schedule's own units (DDPM step, or σ), ``t_frac`` the per-step ``t_frac`` given (as in the
    guidance tables) or else t/(T-1) with T = ``num_train_timesteps``, ``k`` the radial frequency
    (cycles per image), ``power`` the mean RAPSD over ``n_samples``.
    """
    if t_frac is None and num_train_timesteps is None:
        raise ValueError("spectra_frame needs t_frac or num_train_timesteps")
    S1, K = result.power.shape
    steps = np.arange(1, S1 + 1)
    ss, kk = np.meshgrid(steps, np.arange(K), indexing="ij")
    t = result.timesteps[ss.ravel()]
    return pd.DataFrame(
        {
            "model": model,
            "step": ss.ravel().astype(np.int32),
            "t": t,
            "t_frac": t / (num_train_timesteps - 1) if t_frac is None else np.asarray(t_frac)[ss.ravel()],
            "k": kk.ravel().astype(np.int32),
            "power": result.power.ravel(),
            "n_samples": np.int32(result.n_samples),
        }
    )[SPECTRA_COLUMNS]


def save_snapshots(result: SpectraResult, path: str | os.PathLike) -> None:
    """Write the x_t / x̂0 snapshots (and their steps and all timesteps) as safetensors."""
    from safetensors.torch import save_file

    from reschrom.io import atomic_path

    data = {k: v.contiguous() for k, v in result.snapshots.items()}
    data["timesteps"] = torch.as_tensor(result.timesteps)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(data, str(tmp))


def run_spectra(
    model_spec: dict[str, Any],
    settings: dict[str, Any],
    *,
    model: str,
    table_out: str,
    snapshots_out: str,
    n_samples: int = 16,
    batch_size: int = 8,
    seed: int = 0,
    n_snapshots: int = 6,
    device: str = "auto",
) -> None:
    """Rule glue: load registry model ``model_spec``, run :func:`x0_spectra` with the stage
    ``settings``, write the table (:data:`SPECTRA_COLUMNS`) and the snapshots."""
    from reschrom.io import write_parquet
    from reschrom.models.registry import load_model

    net = load_model(model_spec, device, resolution=settings.get("resolution"), sampler=settings.get("sampler", "default"))
    prompts = list(settings["prompts"])
    common = dict(
        n_samples=n_samples,
        batch_size=batch_size,
        seed=seed,
        num_inference_steps=int(settings["num_inference_steps"]),
        guidance_scale=float(settings["guidance_scale"]),
        n_snapshots=n_snapshots,
    )
    res = x0_spectra(net, prompts, **common)
    table = spectra_frame(res, model, t_frac=res.snapshots.pop("t_frac").numpy())
    write_parquet(table, table_out)
    save_snapshots(res, snapshots_out)
