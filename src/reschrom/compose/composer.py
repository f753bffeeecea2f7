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

:class:`PromptComposer` applies any of them to an unmodified diffusers CFG pipeline
(``IFPipeline``, ``StableDiffusionPipeline`` with ε or v prediction, ``StableDiffusion3Pipeline``,
the toy model, the oracle; through :class:`reschrom.adapters.PipelineAdapter`) without copying its
loop: a forward pre-hook on the denoiser, keyed on the timestep it receives, rewrites the
pipeline's batched [uncond, cond] call into [uncond, c_i for each *active* prompt] (weight
≠ 0 at this step; SD3's pooled embeddings are swapped alongside), and a forward hook folds the outputs back into [ε_u, ε_u + Σ_i w_i(ε_i - ε_u)],
so that the pipeline's own CFG line ``ε_u + s(ε_c - ε_u)`` yields eq. 6. A step with one active
prompt at weight 1 is the pipeline's plain call with that prompt's embedding swapped in (no
arithmetic): a Heaviside switch costs exactly the denoiser evaluations of plain CFG, and η = 0
or 1 reproduces the single-prompt images bitwise.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reschrom.adapters import PipelineAdapter, PromptEmbeddings
from reschrom.pairs import (  # noqa: F401  (re-exported)
    COMPOSE_COLUMNS,
    aggregate_compose,
    eta_label,
    expand_pairs,
    find_pair,
    pair_id,
    pair_ids,
    slugify,
    sweep_etas,
)

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

    schedule: Any  # reschrom.schedules.Schedule
    levels: tuple[int, ...]
    num_levels: int
    num_train_timesteps: int
    kernel: int = 2

    def __call__(self, t_frac: float) -> float:
        from reschrom.schedules import DiscreteSchedule
        from reschrom.theory import chromatography

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

    ``schedule`` is a :class:`reschrom.schedules.Schedule` (e.g. ``schedule_from_diffusers`` of
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
        from reschrom.theory import peak_times

        if schedule is None or num_levels is None:
            raise ValueError("bands weighting needs the model's schedule and num_levels")
        from reschrom.schedules import DiscreteSchedule

        peaks = peak_times(schedule, num_levels, kernel)  # schedule t_frac, descending in m
        if isinstance(schedule, DiscreteSchedule):
            peaks = schedule.native_t(peaks) / num_train_timesteps  # as t/T
        split = int(np.sum(peaks < _check_eta(eta)))  # fine levels peak after ηT
        return band_weights(
            schedule, split_levels(num_levels, split), num_levels, num_train_timesteps, kernel
        )
    raise ValueError(f"weighting {weighting!r} is unknown; allowed: {', '.join(WEIGHTINGS)}")


# --------------------------------------------------------------------------------------
# prompt encoding through the pipeline's own encoder
# --------------------------------------------------------------------------------------


def encode_prompt(
    pipe: Any, prompt: str, device: torch.device | str | None = None, negative_prompt: str | None = None
) -> PromptEmbeddings:
    """(cond, uncond, pooled_cond, pooled_uncond) of one prompt by the pipeline's ``encode_prompt``.

    Through :meth:`reschrom.adapters.PipelineAdapter.encode_prompt`: only the arguments the
    pipeline's signature accepts are passed (IF: ``clean_caption=False``; SD:
    ``do_classifier_free_guidance``; SD3: ``prompt_2 = prompt_3 = None``), so the embeddings are
    exactly those the pipeline computes for ``pipe(prompt=...)``. The pooled embeddings are
    None except for SD3-style pipelines.
    """
    return PipelineAdapter.for_pipeline(pipe).encode_prompt(prompt, device, negative_prompt)


# --------------------------------------------------------------------------------------
# the composer
# --------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    """What the composer did at one denoiser call."""

    t: float
    t_frac: float
    active: tuple[int, ...]
    weights: tuple[float, ...]
    rows: int  # batch rows the denoiser evaluated (N images × (1 + active prompts))
    passthrough: bool  # one prompt at weight 1: the pipeline's plain CFG call


def _timestep_value(t: Any) -> float:
    if isinstance(t, torch.Tensor):
        return float(t.reshape(-1)[0].item())
    return float(t)


@dataclass
class PromptComposer:
    """Eq. 6 with time-dependent weights on an unmodified diffusers CFG pipeline.

    Works for every family of :class:`reschrom.adapters.PipelineAdapter` (IF, SD with ε or v
    prediction, SD3 flow matching, the oracle). ``prompts[i]`` is weighted by
    ``weights[i](t/T)`` (t the denoiser's timestep, T ``num_train_timesteps``: for flow matching
    t/T = σ); prompts whose |weight| ≤ ``prune_below`` at a step are not evaluated (a negative
    ``prune_below`` evaluates every prompt at every step: the naive composition, for
    comparison). Call it like the pipeline, minus the prompt arguments:
    ``composer(generator=g, guidance_scale=7.5, num_inference_steps=50, output_type="np")``.
    ``records`` lists, per denoiser call of the last run, the active prompts and batch rows.
    """

    pipe: Any
    prompts: Sequence[str]
    weights: Sequence[WeightFn]
    negative_prompt: str | None = None
    prune_below: float = 0.0
    device: torch.device | str | None = None
    records: list[StepRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.weights) or not self.prompts:
            raise ValueError(
                f"need one weight per prompt, got {len(self.prompts)} prompts and {len(self.weights)} weights"
            )
        self.adapter = PipelineAdapter.for_pipeline(self.pipe)
        embeds = [self.adapter.encode_prompt(p, self.device, self.negative_prompt) for p in self.prompts]
        self.cond = [e.cond for e in embeds]
        self.uncond = embeds[0].uncond
        # everything that belongs to a prompt is swapped with it: the pooled text embedding (SD3's
        # ``pooled_projections``, SDXL's ``added_cond_kwargs["text_embeds"]``) and the text
        # attention mask (PixArt, Sana: ``encoder_attention_mask``)
        has_pooled = embeds[0].pooled_cond is not None
        self.pooled = [e.pooled_cond for e in embeds] if has_pooled else None
        self.pooled_uncond = embeds[0].pooled_uncond if has_pooled else None
        if has_pooled and self.adapter.pooled_path is None:
            raise ValueError(
                f"{type(self.pipe).__name__}: encode_prompt returns a pooled embedding but the adapter does "
                f"not know where {type(self.adapter.denoiser).__name__} receives it"
            )
        has_mask = embeds[0].mask_cond is not None
        self.masks = [e.mask_cond for e in embeds] if has_mask else None
        self.mask_uncond = embeds[0].mask_uncond if has_mask else None
        self.num_train_timesteps = self.adapter.num_train_timesteps
        self._plan: tuple | None = None

    @property
    def denoiser(self) -> torch.nn.Module:
        """The module the pipeline calls once per step (``unet``, or ``transformer``)."""
        return self.adapter.denoiser

    def weights_at(self, t_frac: float) -> list[float]:
        return [float(w(t_frac)) for w in self.weights]

    # -- hooks -----------------------------------------------------------------------

    def _pre_hook(self, module, args, kwargs):
        a = self.adapter
        if not a.is_guidance_call(args, kwargs):  # SD3 skip-layer guidance: leave it alone
            self._plan = None
            return None
        sample = a.sample(args, kwargs)
        t = a.timestep(args, kwargs)
        ehs = a.embeds(args, kwargs)
        B = sample.shape[0]
        off = a.cfg_off(B)
        if off is None and (ehs is None or ehs.shape[0] != B):
            off = (
                f"{type(self.pipe).__name__}: its {type(module).__name__} got a batch of {B} with "
                f"{None if ehs is None else ehs.shape[0]} text embeddings, not a batched [uncond, cond] call"
            )
        if off is not None:
            raise ValueError(f"PromptComposer: {off}")
        N = B // 2
        tv = _timestep_value(t)
        t_frac = a.t_over_T(t)  # the paper's t/T: the DDPM step / T, or σ on the pipeline's clock
        w = self.weights_at(t_frac)
        active = tuple(i for i, wi in enumerate(w) if abs(wi) > self.prune_below)
        passthrough = len(active) == 1 and w[active[0]] == 1.0
        k = len(active)
        rows = N * (1 + k)
        self.records.append(StepRecord(tv, t_frac, active, tuple(w), rows, passthrough))
        self._plan = (N, k, [w[i] for i in active], passthrough, sample.shape[1])

        def swap(batched: torch.Tensor, per_prompt: Sequence[torch.Tensor]) -> torch.Tensor:
            """[uncond rows, then N rows of each active prompt's embedding]."""
            conds = [per_prompt[i].to(batched.device, batched.dtype).expand(N, *per_prompt[i].shape[1:]) for i in active]
            return torch.cat([batched[:N], *conds], dim=0)

        if not passthrough:  # x_t, the timestep and every other batched input: [uncond, cond × k]
            args, kwargs = a.map_batched(
                args, kwargs, B, lambda x: torch.cat([x[:N]] + [x[N:]] * k, dim=0), skip=(a.embeds_arg, a.pooled_arg)
            )
        args, kwargs = a.with_arg(args, kwargs, a.embeds_arg, swap(ehs, self.cond))
        pooled = a.pooled_at(args, kwargs)
        if pooled is not None and self.pooled is not None:
            args, kwargs = a.with_pooled(args, kwargs, swap(pooled, self.pooled))
        mask = a.arg(args, kwargs, a.mask_arg, None) if a.mask_arg else None
        if mask is not None and self.masks is not None:
            args, kwargs = a.with_arg(args, kwargs, a.mask_arg, swap(mask, self.masks))
        return tuple(args), kwargs

    def _post_hook(self, module, args, kwargs, output):
        plan, self._plan = self._plan, None
        if plan is None:
            return output
        N, k, w, passthrough, C = plan
        if passthrough:
            return output
        out = self.adapter.output_tensor(output)
        unc = out[:N]
        e_u, v_u = unc[:, :C], unc[:, C:]
        comb = e_u.clone()
        var_num = torch.zeros_like(v_u)
        wsum = 0.0
        # eq. 6 inside the pipeline's CFG, on the raw outputs. For v prediction and flow matching
        # ε is an affine function of the output with the same x_t-dependent offset for every
        # prompt (ε = √ᾱ·v + √(1−ᾱ)·x_t, ε = x_flow + (1−σ)·u), so ε_u + Σ w_i(ε_i − ε_u) is
        # exactly to_eps(o_u + Σ w_i(o_i − o_u)): combining v or u is combining ε.
        for j in range(k):
            o_j = out[N * (1 + j) : N * (2 + j)]
            comb = comb + w[j] * (o_j[:, :C] - e_u)
            var_num = var_num + w[j] * o_j[:, C:]
            wsum += w[j]
        # learned-variance channels (IF): weighted mean of the active prompts' predictions
        v_c = var_num / wsum if k and abs(wsum) > 0 else v_u
        cond = torch.cat([comb, v_c], dim=1)
        return self.adapter.replace_output(output, torch.cat([unc, cond], dim=0))

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        """Install the two hooks on the denoiser for the duration of the block."""
        mod = self.denoiser
        h1 = mod.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
        h2 = mod.register_forward_hook(self._post_hook, with_kwargs=True)
        try:
            yield
        finally:
            h1.remove()
            h2.remove()
            self._plan = None

    def embedding_kwargs(self, num_images: int = 1) -> dict[str, torch.Tensor]:
        """The ``pipe(...)`` embedding arguments of a composed run of ``num_images`` images (the
        first prompt's, repeated; the hooks swap in the active prompts' at every step)."""
        pooled = (self.pooled[0], self.pooled_uncond) if self.pooled is not None else (None, None)
        masks = (self.masks[0], self.mask_uncond) if self.masks is not None else (None, None)
        e = PromptEmbeddings(self.cond[0], self.uncond, *pooled, *masks).pipeline_kwargs()
        return {k: v.repeat_interleave(num_images, dim=0) for k, v in e.items()}

    def __call__(self, **kwargs: Any) -> Any:
        """Run the pipeline with the composed guidance; returns the pipeline's output.

        ``num_images_per_prompt`` n is passed as n copies of the embeddings (SD3's pipeline does
        not repeat given embeddings itself); the initial noise has the same shape (n, …) and so
        the same draws as the pipeline's own call with ``num_images_per_prompt=n``.
        """
        if kwargs.get("guidance_scale", 2.0) <= 1.0:
            raise ValueError("prompt composing needs classifier-free guidance (guidance_scale > 1)")
        n = int(kwargs.pop("num_images_per_prompt", None) or 1)
        if "negative_prompt" in inspect.signature(self.pipe.__call__).parameters:
            kwargs.setdefault("negative_prompt", None)  # PixArt defaults to "", which clashes with the embeddings
        self.records = []
        with torch.no_grad(), self.hooks():
            return self.pipe(**self.embedding_kwargs(n), num_images_per_prompt=1, **kwargs)

    # -- accounting ----------------------------------------------------------------------

    def conditional_evaluations(self) -> list[int]:
        """Per denoiser call of the last run: conditional rows per image (= active prompts)."""
        out = []
        for r in self.records:
            n = r.rows // (1 + len(r.active))
            out.append(r.rows // n - 1)
        return out


# --------------------------------------------------------------------------------------
# the η sweep (paper Fig. 7, 9) and its metrics
# --------------------------------------------------------------------------------------



def _to_chw(images: Any) -> torch.Tensor:
    """Pipeline ``np`` output (B, H, W, C) in [0, 1] → float64 (B, C, H, W)."""
    if isinstance(images, torch.Tensor):
        x = images.double()
        return x if x.shape[1] in (1, 3, 4) else x.permute(0, 3, 1, 2)
    return torch.from_numpy(np.asarray(images, dtype=np.float64)).permute(0, 3, 1, 2)


def save_png(image: torch.Tensor, path: str) -> None:
    """Write one (C, H, W) image in [0, 1] as an 8-bit PNG, atomically."""
    from PIL import Image

    from reschrom.io import atomic_path

    arr = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def load_png(path: str) -> np.ndarray:
    """An RGB PNG as a float array (H, W, C) in [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def model_schedule_table(pipe: Any, kernel: int = 2, n_t: int = 200) -> Any:
    """The theory table (eq. 16, 18) of the model's own schedule at its denoiser's resolution."""
    from reschrom.theory import theory_table

    adapter = PipelineAdapter.for_pipeline(pipe)
    return theory_table(adapter.schedule(name="model"), adapter.resolution, n_t, kernel)


def _sweep_rows(
    images: Mapping[float, torch.Tensor], model: str, pid: str, s: str, x: str, weighting: str, seed: int, kernel: int
) -> list[dict[str, Any]]:
    """Rows of :data:`COMPOSE_COLUMNS` for one pair: band energies (eq. 19) of each η image's
    difference from the two references (η = 0: structure alone, η = 1: texture alone)."""
    from reschrom.pyramid import band_energies
    from reschrom.theory import level_resolutions

    ref_s, ref_x = images[0.0], images[1.0]
    res = level_resolutions(ref_s.shape[-1], kernel)
    rows = []
    for eta, img in images.items():
        es = band_energies(img - ref_s, kernel)[0].numpy()
        ex = band_energies(img - ref_x, kernel)[0].numpy()
        for m in range(len(es)):
            rows.append(
                {
                    "model": model,
                    "pair_id": pid,
                    "structure": s,
                    "texture": x,
                    "weighting": weighting,
                    "eta": float(eta),
                    "seed": int(seed),
                    "m": m,
                    "resolution": int(res[m]),
                    "energy_vs_structure": float(es[m]),
                    "energy_vs_texture": float(ex[m]),
                    "share_vs_structure": float(es[m] / es.sum()) if es.sum() > 0 else 0.0,
                    "share_vs_texture": float(ex[m] / ex.sum()) if ex.sum() > 0 else 0.0,
                }
            )
    return rows


def compose_sweep(
    pipe: Any,
    pairs: Sequence[Mapping[str, str]],
    etas: Sequence[float],
    out_dir: str,
    *,
    model: str,
    seed: int = 0,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 50,
    weighting: str = "heaviside",
    width: float | None = None,
    kernel: int = 2,
    device: torch.device | str | None = None,
    call_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """Render every pair at every η of :func:`sweep_etas` with one seed; return the metrics.

    Images go to ``{out_dir}/{pair_id}/eta_{η}.png``; every η of one pair starts from the same
    initial noise (a generator seeded ``seed`` on ``device``). Returns the DataFrame of
    :data:`COMPOSE_COLUMNS` (rows for the configured η and the references 0 and 1).
    """
    import os

    import pandas as pd

    from reschrom.theory import num_levels

    dev = torch.device(device) if device is not None else pipe._execution_device
    T = int(pipe.scheduler.config.get("num_train_timesteps", 1000))
    adapter = PipelineAdapter.for_pipeline(pipe)
    M = num_levels(adapter.resolution, kernel)
    schedule = adapter.schedule(name=model) if weighting == "bands" else None
    extra = dict(call_kwargs or {})
    rows = []
    for pair in pairs:
        s, x = str(pair["structure"]), str(pair["texture"])
        pid = pair_id(s, x)
        images: dict[float, torch.Tensor] = {}
        for eta in sweep_etas(etas):
            w = make_weights(weighting, eta, width, schedule, M, T, kernel)
            composer = PromptComposer(pipe, [s, x], w, device=dev)
            gen = torch.Generator(device=dev).manual_seed(int(seed))
            out = composer(
                generator=gen,
                guidance_scale=guidance_scale,
                num_inference_steps=num_inference_steps,
                output_type="np",
                **extra,
            )
            img = _to_chw(out.images)[:1]
            images[eta] = img
            save_png(img[0], os.path.join(out_dir, pid, f"eta_{eta_label(eta)}.png"))
        rows += _sweep_rows(images, model, pid, s, x, weighting, seed, kernel)
    return pd.DataFrame(rows, columns=COMPOSE_COLUMNS)


# --------------------------------------------------------------------------------------
# config glue: models and prompt pairs
# --------------------------------------------------------------------------------------


def compose_sweep_denoiser(
    den: Any,
    pairs: Sequence[Mapping[str, str]],
    etas: Sequence[float],
    out_dir: str,
    *,
    model: str,
    seed: int = 0,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 50,
    weighting: str = "heaviside",
    width: float | None = None,
    kernel: int = 2,
) -> Any:
    """:func:`compose_sweep` for a denoiser model (``kind: module``, the flow-matching toy):
    the project's DDIM (eq. 4) with eq. 6's time-dependent weights, evaluating only the
    active prompts at each step. ``t_frac`` of the weights is the schedule's time fraction.
    Images are the model's x0 mapped from [-1, 1] to [0, 1]."""
    import os

    import pandas as pd

    from reschrom.denoisers import initial_noise, sample_cfg
    from reschrom.theory import num_levels

    M = num_levels(int(den.resolution), kernel)
    rows = []
    for pair in pairs:
        s, x = str(pair["structure"]), str(pair["texture"])
        pid = pair_id(s, x)
        conds = [den.encode([s]), den.encode([x])]
        uncond = den.null_condition(1)
        images: dict[float, torch.Tensor] = {}
        for eta in sweep_etas(etas):
            w = make_weights(weighting, eta, width, den.schedule, M, 1, kernel)
            x_T = initial_noise(den, 1, int(seed), den.device)
            x0 = sample_cfg(
                den, conds, uncond, weights=w, guidance_scale=float(guidance_scale),
                num_inference_steps=int(num_inference_steps), x_T=x_T,
            )
            img = ((x0.double().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)
            images[eta] = img
            save_png(img[0], os.path.join(out_dir, pid, f"eta_{eta_label(eta)}.png"))
        rows += _sweep_rows(images, model, pid, s, x, weighting, seed, kernel)
    return pd.DataFrame(rows, columns=COMPOSE_COLUMNS)


def run_compose_pair(
    model_spec: Mapping[str, Any],
    settings: Mapping[str, Any],
    pair: Mapping[str, str],
    *,
    model: str,
    etas: Sequence[float],
    out_dir: str,
    metrics_out: str,
    theory_out: str,
    seed: int = 0,
    weighting: str = "heaviside",
    width: float | None = None,
    kernel: int = 2,
    device: str = "auto",
) -> None:
    """Rule glue for one pair of registry model ``model_spec`` with the stage ``settings``:
    images ``{out_dir}/eta_{η}.png``, its metrics and the model's theoretical chromatography
    (the strip of Fig. 7)."""
    import os
    import shutil
    import tempfile

    from reschrom.io import write_parquet
    from reschrom.registry import is_denoiser_model, load_model
    from reschrom.theory import theory_table

    net = load_model(model_spec, device, resolution=settings.get("resolution"), sampler=settings.get("sampler", "default"))
    pid = pair_id(pair["structure"], pair["texture"])
    common = dict(
        model=model, seed=seed, guidance_scale=float(settings["guidance_scale"]),
        num_inference_steps=int(settings["num_inference_steps"]), weighting=weighting, width=width, kernel=kernel,
    )
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out_dir)) or ".") as tmp:
        if is_denoiser_model(model_spec):
            df = compose_sweep_denoiser(net, [pair], etas, tmp, **common)
            table = theory_table(net.schedule, int(net.resolution), 200, kernel)
        else:
            df = compose_sweep(net, [pair], etas, tmp, **common)
            table = model_schedule_table(net, kernel)
        os.makedirs(out_dir, exist_ok=True)
        for name in os.listdir(os.path.join(tmp, pid)):
            shutil.move(os.path.join(tmp, pid, name), os.path.join(out_dir, name))
    write_parquet(table, theory_out)
    write_parquet(df, metrics_out)
