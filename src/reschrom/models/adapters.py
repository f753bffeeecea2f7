"""One adapter layer for diffusers CFG pipelines of every family (docs/DESIGN.md, "Models have one home").

The CFG probe (:mod:`reschrom.measure.probe`), prompt composing (:mod:`reschrom.compose`) and the x̂0
capture (:mod:`reschrom.measure.trajectory`) hook a pipeline's denoiser and scheduler without copying
its loop. What differs between families is how to read a denoiser call and what its output
means; :class:`PipelineAdapter` knows both, and gives everything in the variance-preserving
convention of eq. 1, x_t = √ᾱ·x0 + √(1−ᾱ)·ε. The families, their clocks and the loops refused
are in :mod:`reschrom.models.families`.

Times: ``t_native`` is the schedule's own time (the DDPM step, or σ), ``t_frac`` ∈ [0, 1]
(1 = pure noise) is t/(T−1) for DDPM-family schedulers and σ itself for flow matching, and
:meth:`PipelineAdapter.schedule` is the :class:`reschrom.theory.schedules.Schedule` on that same
clock (``schedule().alpha_bar(t_frac) == alpha_bar(timestep)``).

Everything computed from a denoiser call stays on its device (no host synchronisation).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from reschrom.models.families import (
    FAMILIES,
    PREDICTIONS,
    PromptEmbeddings,
    autoencoder,
    call_arg_names,
    cfg_off_line,
    condition_path,
    configured_call,
    encode_prompt,
    flow_clock,
    is_modular,
    latent_scale,
    loop_facts,
    memo_sigma,
    output_tensor,
    replace_at,
    replace_output,
    scheduler_sigma,
    track_geometry,
    unpack_latents,
    unsupported_reason,
    value_at,
)

_MISSING = object()


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """float32 for half-precision tensors, else the tensor's own floating dtype."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _f64(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _col(v: torch.Tensor, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Per-sample scalars (a scalar or (B,)) as (B or 1, 1, …, 1) in ``dtype`` on ``like``'s device."""
    return v.to(like.device, dtype).reshape(-1, *([1] * (like.ndim - 1)))


class PipelineAdapter:
    """A diffusers CFG pipeline seen through one interface (see the module docstring).

    Build it with :meth:`for_pipeline`. Attributes: ``pipe``, ``family`` (:data:`FAMILIES`),
    ``prediction`` (:data:`PREDICTIONS`), ``denoiser`` (the module called once per step),
    ``sample_arg`` / ``timestep_arg`` / ``embeds_arg`` / ``pooled_arg`` (the denoiser's argument
    names for x_t, the timestep, the text embeddings and the pooled text embeddings, None if it
    has none), ``channels`` (C of x_t), ``resolution`` (side of the denoised tensor: pixels for
    IF and the oracle, latents for SD/SD3), ``num_train_timesteps``.
    """

    family: str
    prediction: str

    def __init__(self, pipe: Any, denoiser: torch.nn.Module, family: str, prediction: str) -> None:
        if family not in FAMILIES:
            raise ValueError(f"adapter family {family!r} is unknown; allowed: {', '.join(FAMILIES)}")
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"{type(pipe).__name__}: prediction type {prediction!r} is not supported; "
                f"allowed: {', '.join(PREDICTIONS)}"
            )
        self.pipe = pipe
        self.denoiser = denoiser
        self.family = family
        self.prediction = prediction
        self._params = [
            n
            for n, p in inspect.signature(denoiser.forward).parameters.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        self.sample_arg = "hidden_states" if "hidden_states" in self._params else "sample"
        self.timestep_arg = "timestep"
        self.embeds_arg = "encoder_hidden_states"
        self.embeds_path = condition_path(denoiser)  # Kandinsky 2.2: added_cond_kwargs["image_embeds"]
        self.pooled_arg: str | None = "pooled_projections" if "pooled_projections" in self._params else None
        # where the pooled text embedding enters: SD3 ``pooled_projections``; SDXL's UNet
        # (``addition_embed_type="text_time"``) ``added_cond_kwargs["text_embeds"]``
        self.pooled_path: tuple[str, ...] | None = (self.pooled_arg,) if self.pooled_arg else None
        if self.pooled_path is None and getattr(denoiser.config, "addition_embed_type", None) == "text_time":
            self.pooled_path = ("added_cond_kwargs", "text_embeds")
        self.mask_arg: str | None = next(
            (m for m in ("encoder_attention_mask", "encoder_hidden_states_mask", "text_embedding_mask") if m in self._params), None
        )
        # true CFG (Flux, Qwen-Image, Lumina 2, CogView4): one call per condition on the same x_t;
        # packed latents (Flux, Qwen-Image): (B, seq, 4·C) tokens of 2×2 patches
        self.two_call, self.cond_first, self.packed, self.output_sign = loop_facts(pipe)
        self.geometry: tuple[int, int] | None = None  # (height, width) in pixels of the running call
        self._tables: dict[str, torch.Tensor] = {}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def for_pipeline(cls, pipe: Any) -> PipelineAdapter:
        """The adapter of ``pipe``: IF, SD (ε / v / x0), SD3 (flow matching) or the oracle.

        A :class:`PipelineAdapter` passes through unchanged. The denoiser is ``pipe.unet`` or
        ``pipe.transformer``; a ``FlowMatch*`` scheduler makes it a flow-matching adapter,
        anything with ``alphas_cumprod`` a DDPM-family one (``prediction_type`` from its config).
        """
        if isinstance(pipe, PipelineAdapter):
            return pipe
        if isinstance(pipe, torch.nn.Module):
            raise TypeError(
                f"PipelineAdapter.for_pipeline takes the pipeline, not its denoiser "
                f"({type(pipe).__name__}): pass pipe, not pipe.unet"
            )
        reason = unsupported_reason(pipe)
        if reason is not None:
            raise ValueError(reason)
        den = None
        for name in ("unet", "transformer"):
            m = getattr(pipe, name, None)
            if isinstance(m, torch.nn.Module):
                den = m
                break
        if den is None:
            raise ValueError(f"{type(pipe).__name__} has no unet or transformer to adapt")
        sched = getattr(pipe, "scheduler", None)
        if sched is None:
            raise ValueError(f"{type(pipe).__name__} has no scheduler")
        pred = str(sched.config.get("prediction_type", "epsilon"))
        if pred == "flow_prediction" and not sched.config.get("use_flow_sigmas", False):
            raise ValueError(
                f"{type(pipe).__name__}: {type(sched).__name__} predicts flow without use_flow_sigmas: the "
                "adapter cannot place its steps on the σ clock"
            )
        if "FlowMatch" in type(sched).__name__ or pred == "flow_prediction":
            # FlowMatch* schedulers, and DPM-Solver / UniPC with flow sigmas (Sana's released setup)
            if getattr(sched, "sigmas", _MISSING) is _MISSING:
                raise ValueError(f"{type(pipe).__name__}: {type(sched).__name__} has no sigmas to read the clock from")
            adapter = FlowMatchAdapter(pipe, den, "sd3", "flow")
            adapter.clock, adapter.clock_a, adapter.clock_b = flow_clock(pipe, den)
            return adapter
        if getattr(sched, "alphas_cumprod", None) is None:
            raise ValueError(
                f"{type(pipe).__name__}: scheduler {type(sched).__name__} is neither DDPM-family "
                "(alphas_cumprod) nor flow matching"
            )
        if type(pipe).__name__ == "OraclePipeline":
            family = "oracle"
        elif autoencoder(pipe) is not None:
            family = "sd"
        else:
            family = "if"
        return VPAdapter(pipe, den, family, str(sched.config.get("prediction_type", "epsilon")))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.pipe).__name__}, family={self.family!r}, prediction={self.prediction!r})"

    # -- static facts -----------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        return int(self.pipe.scheduler.config.get("num_train_timesteps", 1000))

    @property
    def channels(self) -> int:
        """C of x_t (the denoiser's ``in_channels``)."""
        return int(self.denoiser.config.in_channels)

    @property
    def resolution(self) -> int:
        """Side of the tensor the denoiser sees by default (``config.sample_size``)."""
        s = self.denoiser.config.sample_size
        return int(s[0] if isinstance(s, (tuple, list)) else s)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent (1 for pixel-space pipelines; Kandinsky's ``movq_scale_factor``)."""
        return latent_scale(self.pipe)

    def probed_resolution(self, image_resolution: int | None = None) -> int:
        """Side of the probed tensor for an image of ``image_resolution`` pixels (None: default)."""
        if image_resolution is None:
            return self.resolution
        return int(image_resolution) // self.vae_scale_factor

    @functools.cached_property  # read per denoiser call (cfg_off): the signature once
    def cfg_scale_arg(self) -> str:
        """``true_cfg_scale`` (Flux, Qwen-Image) or ``guidance_scale``: the CFG scale argument."""
        return call_arg_names(self.pipe)[0]

    @property
    def embeds_kwarg(self) -> str:
        """``image_embeds`` (Kandinsky 2.2) or ``prompt_embeds``: the condition's ``pipe(...)`` argument."""
        return "image_embeds" if self.embeds_path[-1] == "image_embeds" else "prompt_embeds"

    @property
    def mask_kwarg(self) -> str:
        """``prompt_embeds_mask`` (Qwen-Image) or ``prompt_attention_mask``: the mask argument."""
        return call_arg_names(self.pipe)[1]

    # -- geometry: packed latents --------------------------------------------------------------
    def tracking_geometry(self) -> contextlib.AbstractContextManager:
        """Within the block, :attr:`geometry` is the (height, width) in pixels each pipeline call
        prepares its latents for (:func:`reschrom.models.families.track_geometry`)."""
        if not self.packed:
            return contextlib.nullcontext()
        return track_geometry(self.pipe, lambda hw: setattr(self, "geometry", hw))

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """x on the (B, C, H, W) latent grid (:func:`reschrom.models.families.unpack_latents`)."""
        return unpack_latents(self.pipe, x, self.geometry) if self.packed else x

    def call_kwargs(self, resolution: int | None = None) -> dict[str, Any]:
        """Extra ``pipe(...)`` arguments for a measurement run.

        IF: ``clean_caption=False`` (skips the bs4/ftfy caption cleaner); latent pipelines
        (SD, SD3) stop at the latents (``output_type="latent"``: the probe has what it needs),
        others return raw tensors (``"pt"``); ``height``/``width`` = ``resolution`` (pixels) if
        given and the pipeline takes them.
        """
        params = inspect.signature(self.pipe.__call__).parameters
        kw: dict[str, Any] = {}
        if "clean_caption" in params:
            kw["clean_caption"] = False
        if is_modular(self.pipe):  # Modular: the state's output named by ``output``
            return {"output": "latents", **({"height": int(resolution), "width": int(resolution)} if resolution else {})}
        kw["output_type"] = "latent" if autoencoder(self.pipe) is not None else "pt"
        if resolution and "height" in params:
            kw["height"] = kw["width"] = int(resolution)
        return {**kw, **configured_call(self.pipe, self.cfg_scale_arg)}  # the registry entry's ``call``

    # -- reading and rewriting a denoiser call -------------------------------------------------
    def _pos(self, name: str) -> int:
        return self._params.index(name) if name in self._params else -1

    def arg(self, args: tuple, kwargs: dict, name: str, default: Any = _MISSING) -> Any:
        """The value of the denoiser argument ``name`` in a call (positional or keyword)."""
        i = self._pos(name)
        if 0 <= i < len(args):
            return args[i]
        if name in kwargs:
            return kwargs[name]
        if default is _MISSING:
            raise TypeError(f"{type(self.denoiser).__name__} called without {name!r}")
        return default

    def with_arg(self, args: tuple, kwargs: dict, name: str, value: Any) -> tuple[tuple, dict]:
        """(args, kwargs) of the call with argument ``name`` set to ``value``."""
        i = self._pos(name)
        if 0 <= i < len(args):
            args = (*args[:i], value, *args[i + 1 :])
        else:
            kwargs = {**kwargs, name: value}
        return tuple(args), kwargs

    def sample(self, args: tuple, kwargs: dict) -> torch.Tensor:
        """x_t as the denoiser receives it (x_flow for flow matching)."""
        return self.arg(args, kwargs, self.sample_arg)

    def timestep(self, args: tuple, kwargs: dict) -> Any:
        return self.arg(args, kwargs, self.timestep_arg)

    def embeds(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """The prompt's condition in a call, at :attr:`embeds_path`."""
        return value_at(self.arg(args, kwargs, self.embeds_path[0], None), self.embeds_path)

    def with_embeds(self, args: tuple, kwargs: dict, value: torch.Tensor) -> tuple[tuple, dict]:
        p = self.embeds_path
        return self.with_arg(args, kwargs, p[0], replace_at(self.arg(args, kwargs, p[0], None), p, value))

    def pooled(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        return None if self.pooled_arg is None else self.arg(args, kwargs, self.pooled_arg, None)

    def pooled_at(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        """The pooled text embedding of a call where :attr:`pooled_path` says it enters."""
        p = self.pooled_path
        return None if p is None else value_at(self.arg(args, kwargs, p[0], None), p)

    def with_pooled(self, args: tuple, kwargs: dict, value: torch.Tensor) -> tuple[tuple, dict]:
        """(args, kwargs) with the pooled text embedding at :attr:`pooled_path` set to ``value``."""
        p = self.pooled_path
        assert p is not None
        return self.with_arg(args, kwargs, p[0], replace_at(self.arg(args, kwargs, p[0], None), p, value))

    def cfg_off(self, batch: int) -> str | None:
        """One line when a denoiser call of ``batch`` rows is not a CFG [uncond, cond] call
        (an odd batch, or the pipeline's own ``do_classifier_free_guidance`` False), else None.
        For a two-call loop: always the line (the caller saw one call where a step needs two)."""
        return cfg_off_line(self.pipe, self.denoiser, self.two_call, batch, self.cfg_scale_arg)

    def is_guidance_call(self, args: tuple, kwargs: dict) -> bool:
        """False for auxiliary denoiser calls that are not the batched [uncond, cond] CFG call
        (SD3's skip-layer guidance calls the transformer a second time with ``skip_layers``)."""
        return kwargs.get("skip_layers") is None

    def map_batched(
        self,
        args: tuple,
        kwargs: dict,
        batch: int,
        fn: Callable[[torch.Tensor], torch.Tensor],
        skip: Iterable[str | None] = (),
    ) -> tuple[tuple, dict]:
        """Apply ``fn`` to every batched tensor argument (leading dimension ``batch``, also inside
        dicts such as ``added_cond_kwargs``) except those named in ``skip``."""
        skip = {s for s in skip if s}

        def f(v: Any) -> Any:
            if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] == batch:
                return fn(v)
            if isinstance(v, dict):
                return {k: f(x) for k, x in v.items()}
            return v

        names = self._params
        new_args = tuple(
            v if (i < len(names) and names[i] in skip) else f(v) for i, v in enumerate(args)
        )
        new_kwargs = {k: (v if k in skip else f(v)) for k, v in kwargs.items()}
        return new_args, new_kwargs

    output_tensor = staticmethod(output_tensor)
    replace_output = staticmethod(replace_output)

    # -- prompts --------------------------------------------------------------------------
    def encode_prompt(
        self,
        prompt: str,
        device: torch.device | str | None = None,
        negative_prompt: str | None = None,
        **options: Any,
    ) -> PromptEmbeddings:
        """Everything of one prompt the denoiser sees, by the pipeline's own ``encode_prompt``
        (:func:`reschrom.models.families.encode_prompt`: the arguments its signature accepts,
        ``options`` such as ``max_sequence_length`` included)."""
        return encode_prompt(self.pipe, prompt, device, negative_prompt, **options)

    # -- the schedule: overridden per parameterisation ------------------------------------------
    def _t(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        """The timestep as a float64 tensor (float32 on MPS) on its own device (or ``device``)."""
        t = timestep if isinstance(timestep, torch.Tensor) else torch.as_tensor(float(timestep))
        dev = torch.device(device) if device is not None else t.device
        return t.to(dev, _f64(dev))

    def alpha_bar(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        """VP ᾱ at a denoiser timestep (same shape as the timestep), float64."""
        raise NotImplementedError

    def t_native(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        """The schedule's own time: the DDPM step, or σ for flow matching."""
        raise NotImplementedError

    def t_frac(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        """t ∈ [0, 1] (1 = pure noise): t/(T−1) for DDPM-family schedulers, σ for flow matching."""
        raise NotImplementedError

    def schedule(self, name: str = "model") -> Any:
        """The :class:`reschrom.theory.schedules.Schedule` of the pipeline on the :meth:`t_frac` clock."""
        raise NotImplementedError

    def eps_scale(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor | None:
        """s with ε_c − ε_u = s·(out_c − out_u) (x_t is shared): None for ε (s = 1), √ᾱ for v,
        −√ᾱ/√(1−ᾱ) for x0, 1−σ for flow."""
        raise NotImplementedError

    def to_eps(self, x_t: torch.Tensor, model_output: torch.Tensor, timestep: Any) -> torch.Tensor:
        """ε in the VP convention of eq. 1 from the raw output (its first C channels) at x_t."""
        raise NotImplementedError

    def x0(self, x_t: torch.Tensor, model_output: torch.Tensor, timestep: Any) -> torch.Tensor:
        """The posterior mean x̂0 (eq. 7) in the model's own space, unclipped."""
        raise NotImplementedError

    # -- derived -------------------------------------------------------------------------------
    def guidance_eps(self, out_uncond: torch.Tensor, out_cond: torch.Tensor, timestep: Any) -> torch.Tensor:
        """The CFG term in ε units, g = ε_c − ε_u, from the two raw output halves (first C
        channels taken by the caller), without forming ε: (v) √ᾱ(v_c − v_u), (flow) (1−σ)(u_c − u_u)."""
        s = self.eps_scale(timestep, out_cond.device)
        if s is None:
            return out_cond - out_uncond
        wd = _work_dtype(out_cond)
        return _col(s, out_cond, wd) * (out_cond.to(wd) - out_uncond.to(wd))

    def x0_from_step(self, sample: torch.Tensor, model_output: torch.Tensor, scheduler_timestep: Any) -> torch.Tensor:
        """x̂0 (eq. 7) from what ``scheduler.step(model_output, scheduler_timestep, sample)``
        receives (the guided output; IF's variance channels dropped)."""
        return self.x0(sample, model_output, self.denoiser_timestep(scheduler_timestep))

    def denoiser_timestep(self, scheduler_timestep: Any) -> Any:
        """The timestep the denoiser gets at the step whose scheduler timestep (what
        ``scheduler.step`` receives) is ``scheduler_timestep``: the same for DDPM-family
        schedulers; (t_s − b)/a on the flow clock of :data:`FLOW_CLOCKS`."""
        return scheduler_timestep

    def t_over_T(self, timestep: Any) -> float:
        """The paper's t/T of a denoiser timestep as a host float (composing weights): the DDPM
        step / T, or σ for flow matching."""
        t = timestep.reshape(-1)[0].item() if isinstance(timestep, torch.Tensor) else timestep
        return float(t) / self.num_train_timesteps

    def step_values(self, timestep: Any) -> torch.Tensor:
        """(timestep, t_native, t_frac, alpha_bar) of a step (first element of a batched
        timestep), one float64 tensor on the timestep's device: no host synchronisation."""
        t = self._t(timestep).reshape(-1)[:1]
        return torch.cat([t, self.t_native(t), self.t_frac(t), self.alpha_bar(t)])


class VPAdapter(PipelineAdapter):
    """DDPM-family schedulers (``alphas_cumprod``): ε, v or x0 prediction on the VP x_t."""

    def _table(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._tables:
            ac = torch.as_tensor(self.pipe.scheduler.alphas_cumprod)
            self._tables[key] = ac.to(device, _f64(device))
        return self._tables[key]

    def alpha_bar(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        t = self._t(timestep, device)
        ac = self._table(t.device)
        T = len(ac)
        tc = t.clamp(0, T - 1)
        i = tc.floor().long().clamp(max=T - 2)
        w = tc - i
        exact = ac[tc.round().long()]
        # fractional timesteps (Euler-type schedulers): σ = √((1−ᾱ)/ᾱ) linear in t
        s0, s1 = ((1 - ac[i]) / ac[i]).sqrt(), ((1 - ac[i + 1]) / ac[i + 1]).sqrt()
        s = s0 + w * (s1 - s0)
        return torch.where(tc == tc.round(), exact, 1.0 / (1.0 + s * s))

    def t_native(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        return self._t(timestep, device)

    def t_frac(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        return self._t(timestep, device) / (len(self.pipe.scheduler.alphas_cumprod) - 1)

    def schedule(self, name: str = "model") -> Any:
        from reschrom.theory.schedules import schedule_from_diffusers

        return schedule_from_diffusers(self.pipe.scheduler, name=name)

    def eps_scale(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor | None:
        if self.prediction == "epsilon":
            return None
        a = self.alpha_bar(timestep, device)
        if self.prediction == "v_prediction":
            return a.sqrt()
        return -(a / (1 - a)).sqrt()  # sample (x0) prediction

    def to_eps(self, x_t: torch.Tensor, model_output: torch.Tensor, timestep: Any) -> torch.Tensor:
        out = model_output[:, : x_t.shape[1]]
        if self.prediction == "epsilon":
            return out
        wd = _work_dtype(out)
        a = _col(self.alpha_bar(timestep, x_t.device), x_t, wd)
        x, o = x_t.to(wd), out.to(wd)
        if self.prediction == "v_prediction":
            return a.sqrt() * o + (1 - a).sqrt() * x
        return (x - a.sqrt() * o) / (1 - a).sqrt()

    def x0(self, x_t: torch.Tensor, model_output: torch.Tensor, timestep: Any) -> torch.Tensor:
        out = model_output[:, : x_t.shape[1]]
        wd = _work_dtype(out)
        a = _col(self.alpha_bar(timestep, x_t.device), x_t, wd)
        x, o = x_t.to(wd), out.to(wd)
        if self.prediction == "epsilon":
            return (x - (1 - a).sqrt() * o) / a.sqrt()
        if self.prediction == "v_prediction":
            return a.sqrt() * x - (1 - a).sqrt() * o
        return o


class FlowMatchAdapter(PipelineAdapter):
    """Rectified flow x_flow = (1−σ)x0 + σε with velocity u = ε − x0 (``output_sign``·the
    transformer output: Lumina 2's loop negates it). The transformer's timestep t is the
    scheduler's t_s = a·t + b on the clock of :data:`FLOW_CLOCKS`; σ is the scheduler's own
    ``sigmas`` entry at that step (:meth:`sigma`)."""

    clock: str = "sigma_T"
    clock_a: float = 1.0
    clock_b: float = 0.0

    def sigma(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        """σ of a transformer timestep t: the scheduler's at t_s = a·t + b
        (:func:`reschrom.models.families.scheduler_sigma`)."""
        return memo_sigma(self._tables, timestep, device, lambda: scheduler_sigma(
            self.pipe.scheduler, self.clock_a * self._t(timestep, device) + self.clock_b, self._tables))

    def denoiser_timestep(self, scheduler_timestep: Any) -> Any:
        if self.clock_a == 1.0 and self.clock_b == 0.0:
            return scheduler_timestep
        return (scheduler_timestep - self.clock_b) / self.clock_a

    def t_over_T(self, timestep: Any) -> float:
        return float(self.sigma(timestep).reshape(-1)[0].item())

    def alpha_bar(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor:
        s = self.sigma(timestep, device)
        return (1 - s) ** 2 / ((1 - s) ** 2 + s**2)

    t_native = t_frac = sigma  # the schedule's own time and t_frac are σ

    def schedule(self, name: str = "model") -> Any:
        """The σ clock: ``FlowMatchingSchedule(shift=1)`` (t_frac = σ; the scheduler's own shift,
        static or resolution-dependent, only decides where its steps fall on it)."""
        from reschrom.theory.schedules import FlowMatchingSchedule

        return FlowMatchingSchedule(shift=1.0, name=name)

    def eps_scale(self, timestep: Any, device: torch.device | str | None = None) -> torch.Tensor | None:
        return self.output_sign * (1 - self.sigma(timestep, device))

    def to_eps(self, x_t: torch.Tensor, model_output: torch.Tensor, timestep: Any) -> torch.Tensor:
        out = model_output[:, : x_t.shape[1]]
        wd = _work_dtype(out)
        s = _col(self.sigma(timestep, x_t.device), x_t, wd)
        return x_t.to(wd) + (1 - s) * (self.output_sign * out.to(wd))

    def x0(self, x_t: torch.Tensor, model_output: torch.Tensor, timestep: Any) -> torch.Tensor:
        out = model_output[:, : x_t.shape[1]]
        wd = _work_dtype(out)
        s = _col(self.sigma(timestep, x_t.device), x_t, wd)
        return x_t.to(wd) - s * (self.output_sign * out.to(wd))

    def x0_from_step(self, sample: torch.Tensor, model_output: torch.Tensor, scheduler_timestep: Any) -> torch.Tensor:
        """x̂0 = x_flow − σ·u from what ``scheduler.step`` receives: the velocity u as the loop
        hands it over (Lumina 2's already negated) at the scheduler's timestep."""
        wd = _work_dtype(model_output)
        s = _col(scheduler_sigma(self.pipe.scheduler, self._t(scheduler_timestep, sample.device), self._tables), sample, wd)
        return sample.to(wd) - s * model_output.to(wd)
