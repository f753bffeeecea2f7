"""Pipeline families and their denoiser calls, for the adapter layer (:mod:`reschrom.models.adapters`).

====================  ==================  ==============  ================================
family                denoiser            x the call gets  output → ε
====================  ==================  ==============  ================================
``if`` (DeepFloyd)    ``unet`` (pixels)   ``sample``      first C of 2C channels (learned
                                                          variance dropped)
``sd`` (latent UNet)  ``unet`` (latents)  ``sample``      ε as is; v: ε = √ᾱ·v + √(1−ᾱ)·x_t;
                                                          x0: ε = (x_t − √ᾱ·x0)/√(1−ᾱ)
``sd3`` (flow)        ``transformer``     ``hidden_states``  velocity u = ε − x0 on
                                          (x_flow)        x_flow = (1−σ)x0 + σε:
                                                          ε = x_flow + (1−σ)·u
``oracle``            ``unet``            ``sample``      ε as is (exact posterior)
====================  ==================  ==============  ================================

For DDPM-family schedulers ᾱ is the scheduler's ``alphas_cumprod`` at the timestep (fractional
timesteps interpolate σ = √((1−ᾱ)/ᾱ) linearly, as diffusers' Euler schedulers do); for flow
matching (``FlowMatch*`` schedulers, and DPM-Solver / UniPC with ``use_flow_sigmas`` and
``prediction_type="flow_prediction"``) ᾱ = (1−σ)²/((1−σ)² + σ²) (same SNR, ((1−σ)/σ)²), and σ
is the scheduler's own ``sigmas`` entry of the step whose timestep the transformer got, mapped
back from the clock the pipeline gives its transformer, which differs between families: SD3
and CogView4 pass the scheduler's timestep, AuraFlow, Flux and Qwen-Image ``t / 1000``, Sana
t·``transformer.config.timestep_scale``, Lumina 2 1 − t/T (:data:`FLOW_CLOCKS`). A
flow-matching pipeline of another class is refused with one line: nothing is recorded on an
assumed clock.

True-CFG loops (Flux with ``true_cfg_scale`` and a negative prompt, Qwen-Image, Lumina 2,
CogView4: :data:`TWO_CALL_PIPELINES`) call the transformer once per condition on the same x_t
tensor; the probe, the composer and the x̂0 capture pair the two calls of a step by the
identity of that tensor and the loop's documented order (conditional first). Lumina 2's loop
negates the output (``output_sign``). Packed latents (Flux, Qwen-Image: (B, seq, 4·C) tokens
of 2×2 patches) are unpacked with the pipeline's own ``_unpack_latents`` at the call's height
and width (:meth:`reschrom.models.adapters.PipelineAdapter.unpack`) before any band is computed.

Modular Diffusers: ``StableDiffusionXLModularPipeline`` with a ``ClassifierFreeGuidance`` guider
is a two-call loop (the guider runs one batch-1 call per condition, on the same x_t, in the
order of its ``_input_predictions``: conditional first); any other modular pipeline or guider is
refused by name. HunyuanDiT's second text stream (mT5 embeddings and mask) is carried per prompt
(:data:`SECOND_STREAMS`); Kandinsky 2.2's decoder is conditioned on image embeddings
(``added_cond_kwargs["image_embeds"]``: :func:`condition_path`), passed to the composer as
:class:`PromptEmbeddings` (from its prior pipeline).

Refused by name (:func:`unsupported_reason`): unchecked true-CFG loops (Chroma, HiDream, any other
``true_cfg_scale``), Modular pipelines other than the one above.

:class:`PromptEmbeddings`, :func:`output_tensor` and :func:`replace_output` read and rewrite a denoiser call's
pieces.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch

FAMILIES = ("if", "sd", "sd3", "oracle")
"""Pipeline families: IF-like pixel UNet, latent UNet (Stable Diffusion), flow-matching
transformer (Stable Diffusion 3), the project's analytic oracle."""

PREDICTIONS = ("epsilon", "v_prediction", "sample", "flow")
"""What a denoiser outputs: ε, v, x0 (diffusers' ``sample``), or a flow-matching velocity."""


FLOW_CLOCKS: dict[str, str] = {
    "StableDiffusion3": "sigma_T",
    "AuraFlow": "sigma_1000",
    "Flux": "sigma_1000",
    "QwenImage": "sigma_1000",
    "Sana": "sigma_T_scaled",
    "Lumina2": "one_minus_sigma",
    "CogView4": "scheduler_timestep",
}
"""Flow-matching pipeline class prefix → the timestep its loop gives the transformer, as the
scheduler timestep t_s it came from: ``sigma_T`` t_s itself (SD3), ``sigma_1000`` t_s / 1000
(AuraFlow, Flux, Qwen-Image), ``sigma_T_scaled`` t_s·``transformer.config.timestep_scale``
(Sana), ``one_minus_sigma`` 1 − t_s/T (Lumina 2, whose loop also negates the output),
``scheduler_timestep`` t_s itself, which CogView4's scheduler does not set to σ·T (its σ are
shifted, its timesteps are not). σ is then read from the scheduler: ``scheduler.sigmas`` at
the step whose ``scheduler.timesteps`` is t_s (:meth:`reschrom.models.adapters.FlowMatchAdapter.sigma`), never
recomputed (dynamic shifting, Flux's μ from the image sequence length, integer DPM-Solver
timesteps)."""

_CLOCK_MAPS: dict[str, Callable[[float, float], tuple[float, float]]] = {
    "sigma_T": lambda T, ts: (1.0, 0.0),
    "sigma_1000": lambda T, ts: (1000.0, 0.0),
    "sigma_T_scaled": lambda T, ts: (1.0 / ts, 0.0),
    "one_minus_sigma": lambda T, ts: (-T, T),
    "scheduler_timestep": lambda T, ts: (1.0, 0.0),
}
"""clock → (a, b) with scheduler timestep t_s = a·t + b for the denoiser's timestep t."""

TWO_CALL_PIPELINES: dict[str, bool] = {
    "Flux": True,
    "QwenImage": True,
    "Lumina2": True,
    "CogView4": True,
}
"""Pipeline class prefixes whose loop calls the denoiser once per condition on the same x_t,
→ whether the conditional call comes first. Read from each loop of diffusers 0.42
(``pipeline_flux.py``, ``pipeline_qwenimage.py``, ``pipeline_lumina2.py``,
``pipeline_cogview4.py``): all four call ``transformer(..., prompt_embeds)`` first, then, when
CFG is on, ``transformer(..., negative_prompt_embeds)`` on the same ``latents`` tensor;
``tests/models/test_families.py`` checks the order against the embeddings each call receives."""

MODULAR_PIPELINES: tuple[str, ...] = ("StableDiffusionXLModularPipeline",)
"""Modular Diffusers pipeline classes whose denoise loop the adapter has been checked against
(``StableDiffusionXLLoopDenoiser``: ``guider.prepare_inputs`` → one ``unet`` call per condition on
``scaled_latents`` → ``guider(...)`` → ``scheduler.step``), with a ``ClassifierFreeGuidance`` guider."""

SECOND_STREAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "HunyuanDiT": (("encoder_hidden_states_t5", "prompt_embeds_2"), ("text_embedding_mask_t5", "prompt_attention_mask_2")),
}
"""Pipeline class prefix → (denoiser argument, ``pipe(...)`` argument) of each further per-prompt
input beyond the first text stream: HunyuanDiT's mT5 embeddings and mask (its ``encode_prompt``
with ``text_encoder_index=1``); composing swaps them with the prompt."""

REFUSED_TWO_CALL: tuple[str, ...] = ("Chroma", "HiDream")
"""True-CFG families whose loop the adapter has not been checked against: refused by name."""

NEGATED_OUTPUT: tuple[str, ...] = ("Lumina2",)
"""Pipelines whose loop negates the transformer output before ``scheduler.step``."""


def unsupported_reason(pipe: Any) -> str | None:
    """One line saying why the adapter cannot read ``pipe``'s CFG steps, or None.

    Refused: Modular Diffusers pipelines (a guider runs one batch-1 call per condition), and
    true-CFG loops (two denoiser calls per step, or a ``true_cfg_scale`` argument) of a class
    the adapter has not been checked against (:data:`REFUSED_TWO_CALL`, or not in
    :data:`TWO_CALL_PIPELINES`), and packed latents (``_pack_latents``) without the
    pipeline's own ``_unpack_latents``.
    """
    name = type(pipe).__name__
    if is_modular(pipe):
        guider = getattr(pipe, "guider", None)
        if name not in MODULAR_PIPELINES:
            return (
                f"{name} is a Modular Diffusers pipeline whose denoise loop the adapter has not been checked "
                f"against (checked: {', '.join(MODULAR_PIPELINES)}): build the classic pipeline class instead"
            )
        if type(guider).__name__ != "ClassifierFreeGuidance" or sorted(guider._input_predictions) != [
            "pred_cond", "pred_uncond"
        ]:
            return (
                f"{name}: its guider {type(guider).__name__} is not ClassifierFreeGuidance, and the adapter reads "
                "only the CFG pair (ε_cond, ε_uncond); pass guider=ClassifierFreeGuidance(guidance_scale=…)"
            )
        return None
    known = any(name.startswith(k) for k in TWO_CALL_PIPELINES)
    refused = any(name.startswith(k) for k in REFUSED_TWO_CALL)
    true_cfg = callable(pipe) and "true_cfg_scale" in inspect.signature(pipe.__call__).parameters
    if refused or (true_cfg and not known):
        return (
            f"{name} calls its transformer twice per step (true CFG), and the adapter knows the order "
            f"of those calls only for {', '.join(k + '*' for k in TWO_CALL_PIPELINES)}: this family "
            "is not supported yet"
        )
    if hasattr(pipe, "_pack_latents") and not hasattr(pipe, "_unpack_latents"):
        return (
            f"{name} packs its latents into 2×2 patch tokens (_pack_latents) and has no _unpack_latents "
            "to read them back on the (C, H, W) grid: this family is not supported yet"
        )
    return None


def flow_clock(pipe: Any, denoiser: torch.nn.Module) -> tuple[str, float, float]:
    """(clock, a, b) with scheduler timestep t_s = a·t + b for the transformer timesteps t of
    ``pipe`` (:data:`FLOW_CLOCKS`); a class it does not know is refused with one line."""
    name = type(pipe).__name__
    T = float(pipe.scheduler.config.get("num_train_timesteps", 1000))
    clock = next((v for k, v in FLOW_CLOCKS.items() if name.startswith(k)), None)
    if clock is None:
        raise ValueError(
            f"{name}: the adapter does not know which clock this flow-matching pipeline gives its "
            f"{type(denoiser).__name__} (σ·T as StableDiffusion3, σ as AuraFlow, 1 − σ as Lumina 2, …), "
            f"and records nothing on an assumed one; known: {', '.join(k + '*' for k in FLOW_CLOCKS)}"
        )
    a, b = _CLOCK_MAPS[clock](T, float(denoiser.config.get("timestep_scale", 1.0) or 1.0))
    return clock, a, b


class PromptEmbeddings(NamedTuple):
    """One prompt encoded by its pipeline: everything of it the denoiser sees.

    ``pooled_*`` are the pooled text embeddings (SD3's ``pooled_projections``, SDXL's
    ``added_cond_kwargs["text_embeds"]``), ``mask_*`` the text attention masks (PixArt, Sana,
    AuraFlow: ``prompt_attention_mask``); None for pipelines without them. ``extra`` holds the
    further per-prompt inputs (:data:`SECOND_STREAMS`: HunyuanDiT's mT5 stream) as
    (denoiser argument, ``pipe(...)`` argument, cond, uncond). For Kandinsky 2.2 ``cond`` and
    ``uncond`` are the image embeddings (``image_embeds``, ``negative_image_embeds``).
    """

    cond: torch.Tensor
    uncond: torch.Tensor
    pooled_cond: torch.Tensor | None = None
    pooled_uncond: torch.Tensor | None = None
    mask_cond: torch.Tensor | None = None
    mask_uncond: torch.Tensor | None = None
    extra: tuple[tuple[str, str, torch.Tensor, torch.Tensor], ...] = ()

    def pipeline_kwargs(
        self, mask_name: str = "prompt_attention_mask", embeds_name: str = "prompt_embeds"
    ) -> dict[str, torch.Tensor]:
        """The ``pipe(...)`` keyword arguments that pass these embeddings instead of a prompt
        (``mask_name``: the pipeline's name of the mask argument, ``prompt_embeds_mask`` for
        Qwen-Image; ``embeds_name``: ``image_embeds`` for Kandinsky 2.2)."""
        kw = {embeds_name: self.cond, "negative_" + embeds_name: self.uncond}
        for _, name, c, u in self.extra:
            kw[name], kw["negative_" + name] = c, u
        if self.pooled_cond is not None:
            kw["pooled_prompt_embeds"] = self.pooled_cond
            kw["negative_pooled_prompt_embeds"] = self.pooled_uncond
        if self.mask_cond is not None:
            kw[mask_name] = self.mask_cond
            kw["negative_" + mask_name] = self.mask_uncond
        return kw


def output_tensor(output: Any) -> torch.Tensor:
    """The prediction tensor of a denoiser output (a tensor, a tuple, or a ``.sample`` output)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    if hasattr(output, "sample"):
        return output.sample
    raise TypeError(f"cannot read the denoiser output of type {type(output).__name__}")


def replace_output(output: Any, new: torch.Tensor) -> Any:
    """``output`` with its prediction tensor replaced by ``new`` (same container type)."""
    if isinstance(output, torch.Tensor):
        return new
    if isinstance(output, (tuple, list)):
        return type(output)([new, *output[1:]])
    output.sample = new
    return output


def encode_prompt(
    pipe: Any,
    prompt: str,
    device: torch.device | str | None = None,
    negative_prompt: str | None = None,
    **options: Any,
) -> PromptEmbeddings:
    """(cond, uncond[, pooled, pooled_uncond][, masks]) of one prompt by ``pipe.encode_prompt``.

    Passes only the arguments its signature accepts (IF: ``clean_caption=False``; SD:
    ``do_classifier_free_guidance``; SD3: ``prompt_2 = prompt_3 = None``; the oracle: what it
    declares), so the embeddings are those the pipeline computes for ``pipe(prompt=...)``.
    ``options`` (e.g. ``max_sequence_length``, Sana's ``complex_human_instruction``) are
    passed where the signature names them: give the same as to the pipeline call.
    """
    name = type(pipe).__name__
    fn = getattr(pipe, "encode_prompt", None)
    if fn is None and is_modular(pipe):  # its text encoder block's, on the pipeline's components
        block = next((b for b in pipe.blocks.sub_blocks.values() if hasattr(b, "encode_prompt")), None)
        fn = None if block is None else functools.partial(block.encode_prompt, pipe)
    if fn is None:
        raise ValueError(
            f"{name} has no encode_prompt: its conditions are not text (Kandinsky 2.2: image embeddings); "
            "pass each condition as PromptEmbeddings(image_embeds, negative_image_embeds), e.g. from its prior pipeline"
        )
    params = inspect.signature(fn).parameters
    dev = torch.device(device) if device is not None else getattr(pipe, "_execution_device", None)
    wanted = {
        "prompt_2": None,
        "prompt_3": None,
        "device": dev,
        "num_images_per_prompt": 1,
        "do_classifier_free_guidance": True,
        "prepare_unconditional_embeds": True,  # Modular Diffusers' name
        "negative_prompt": negative_prompt,
        "clean_caption": False,
    }
    if negative_prompt is None:  # the pipeline's own default (PixArt's is "", not None)
        del wanted["negative_prompt"]
    wanted.update(options)
    kw = {k: v for k, v in wanted.items() if k in params}
    streams = next((v for k, v in SECOND_STREAMS.items() if name.startswith(k)), None)
    if streams is not None:  # HunyuanDiT: (cond, uncond, mask, mask_uncond) per text encoder
        with torch.no_grad():
            (c1, u1, m1, mu1), (c2, u2, m2, mu2) = (fn(prompt, **kw, text_encoder_index=i) for i in (0, 1))
        (e_arg, e_kw), (m_arg, m_kw) = streams
        return PromptEmbeddings(c1, u1, mask_cond=m1, mask_uncond=mu1, extra=((e_arg, e_kw, c2, u2), (m_arg, m_kw, m2, mu2)))
    with torch.no_grad():
        out = fn(prompt, **kw)
    out = tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def emb(x: Any) -> bool:  # a (B, L, D) floating text embedding
        return isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim == 3

    def mask(x: Any) -> bool:  # an integer or boolean attention mask
        return isinstance(x, torch.Tensor) and not x.is_floating_point()

    if len(out) == 4 and emb(out[0]) and mask(out[1]) and emb(out[2]) and mask(out[3]):
        # PixArt, Sana, AuraFlow, Lumina 2: (cond, cond mask, uncond, uncond mask)
        return PromptEmbeddings(out[0], out[2], mask_cond=out[1], mask_uncond=out[3])
    if "negative_prompt" not in params and (len(out) < 2 or not emb(out[1])):
        # Flux (embeds, pooled, text ids), Qwen-Image (embeds, mask): one prompt per call, the
        # negative prompt ("" by default) encoded by a second call, as their loops do
        neg = fn("" if negative_prompt is None else negative_prompt, **kw)
        neg = tuple(neg) if isinstance(neg, (tuple, list)) else (neg,)
        if emb(out[0]) and len(out) >= 2 and isinstance(out[1], torch.Tensor) and out[1].ndim == 2:
            if out[1].is_floating_point():  # Flux: pooled
                return PromptEmbeddings(out[0], neg[0], out[1], neg[1])
            return PromptEmbeddings(out[0], neg[0], mask_cond=out[1], mask_uncond=neg[1])  # Qwen-Image
        if emb(out[0]):
            return PromptEmbeddings(out[0], neg[0])
    if len(out) < 2 or not emb(out[1]):
        raise ValueError(f"{name}.encode_prompt returned no unconditional embedding")
    if not emb(out[0]):
        raise ValueError(f"{name}.encode_prompt returned no (B, L, D) text embedding first")
    if len(out) >= 4 and isinstance(out[2], torch.Tensor):
        if not (out[2].is_floating_point() and out[2].ndim == 2 and isinstance(out[3], torch.Tensor)):
            raise ValueError(
                f"{name}.encode_prompt returns a third output of shape {tuple(out[2].shape)} that is "
                "neither a pooled embedding nor a mask: the adapter does not know its layout"
            )
        return PromptEmbeddings(out[0], out[1], out[2], out[3])  # SD3, SDXL: pooled
    return PromptEmbeddings(out[0], out[1])


@contextlib.contextmanager
def track_geometry(pipe: Any, sink: Callable[[tuple[int, int]], None]) -> Iterator[None]:
    """Within the block, ``sink((height, width))`` in pixels each time ``pipe`` prepares its
    latents (a wrapper around the instance's ``prepare_latents``, restored on exit): what
    :func:`unpack_latents` needs. Host integers only."""
    original = getattr(pipe, "prepare_latents", None)
    if original is None:
        yield
        return
    had = "prepare_latents" in vars(pipe)
    names = list(inspect.signature(original).parameters)

    @functools.wraps(original)
    def prepare_latents(*args: Any, **kwargs: Any) -> Any:
        bound = {**dict(zip(names, args)), **kwargs}
        if "height" in bound and "width" in bound:
            sink((int(bound["height"]), int(bound["width"])))
        return original(*args, **kwargs)

    pipe.prepare_latents = prepare_latents
    try:
        yield
    finally:
        if had:
            pipe.prepare_latents = original
        else:
            del pipe.prepare_latents


def unpack_latents(pipe: Any, x: torch.Tensor, geometry: tuple[int, int] | None) -> torch.Tensor:
    """Packed (B, seq, 4·C) tokens of 2×2 patches (Flux, Qwen-Image) as (B, C, H, W), by the
    pipeline's own ``_unpack_latents`` at the call's (height, width) in pixels (a square image
    when unknown); other tensors as they are."""
    if x.ndim != 3:
        return x
    vsf = int(getattr(pipe, "vae_scale_factor", 1))
    h, w = geometry if geometry is not None else (int(round(x.shape[1] ** 0.5)) * 2 * vsf,) * 2
    out = type(pipe)._unpack_latents(x, h, w, vsf)
    return out[:, :, 0] if out.ndim == 5 else out  # Qwen-Image: (B, C, 1, H, W)


def memo_sigma(cache: dict[str, Any], timestep: Any, device: Any, compute: Any) -> torch.Tensor:
    """``compute()`` (σ of ``timestep``), remembered for the last timestep tensor: one probe,
    composer or x̂0 hook asks several times per step for the σ of the same tensor (ε, g, ᾱ, the
    clock). The memo holds the tensor itself (so its id cannot be reused) and its ``_version``
    (an in-place change invalidates it); a non-tensor timestep, or an inference-mode tensor (which
    has no version counter), is never remembered."""
    tensor = isinstance(timestep, torch.Tensor) and not timestep.is_inference()
    ver = timestep._version if tensor else None
    memo = cache.get("memo")
    if ver is not None and memo is not None and memo[0] is timestep and memo[1:3] == (ver, str(device)):
        return memo[3]
    out = compute()
    if ver is not None:
        cache["memo"] = (timestep, ver, str(device), out)
    return out


def scheduler_sigma(scheduler: Any, ts: torch.Tensor, cache: dict[str, Any]) -> torch.Tensor:
    """σ at scheduler timestep ``ts`` read from ``scheduler``: its own ``sigmas`` entry at each of
    its steps (the shift, static or dynamic, μ from the image sequence length, integer
    DPM-Solver timesteps included), linear in t_s between them and the ends (0, 0), (T, 1):
    t_s/T exactly for schedulers whose timesteps are σ·T; t_s/T before it has timesteps. The
    table is built once per ``set_timesteps`` on ``ts``'s device (``cache``): no synchronisation."""
    T = float(scheduler.config.get("num_train_timesteps", 1000))
    steps, sig = getattr(scheduler, "timesteps", None), getattr(scheduler, "sigmas", None)
    if not isinstance(steps, torch.Tensor) or not isinstance(sig, torch.Tensor) or len(steps) == 0:
        return ts / T
    device = ts.device
    key = (id(steps), id(sig), str(device))
    hit = cache.get("sigma")
    if hit is None or hit[0] != key:
        dt = ts.dtype
        n = len(steps)
        t_all = torch.cat([steps.to(device, dt), torch.tensor([0.0, T], device=device, dtype=dt)])
        s_all = torch.cat([sig[:n].to(device, dt), torch.tensor([0.0, 1.0], device=device, dtype=dt)])
        order = torch.argsort(t_all, stable=True)
        hit = (key, t_all[order], s_all[order])
        cache["sigma"] = hit
    tab_t, tab_s = hit[1], hit[2]
    x = ts.reshape(-1).clamp(tab_t[0], tab_t[-1])
    i = torch.searchsorted(tab_t, x).clamp(1, len(tab_t) - 1)
    t0, t1, s0, s1 = tab_t[i - 1], tab_t[i], tab_s[i - 1], tab_s[i]
    gap = t1 - t0
    w = (x - t0) / torch.where(gap > 0, gap, torch.ones_like(gap))
    return torch.where(gap > 0, s0 + w * (s1 - s0), s1).reshape(ts.shape)


def loop_facts(pipe: Any) -> tuple[bool, bool, bool, float]:
    """(two calls per step, conditional call first, packed latents, sign of the output in the
    velocity the loop hands the scheduler) of ``pipe``'s loop (:data:`TWO_CALL_PIPELINES`,
    ``_pack_latents`` with ``_unpack_latents``, :data:`NEGATED_OUTPUT`)."""
    name = type(pipe).__name__
    first = next((v for k, v in TWO_CALL_PIPELINES.items() if name.startswith(k)), None)
    if is_modular(pipe):  # the guider's batches, in the order of its predictions
        first = pipe.guider._input_predictions[0] == "pred_cond"
    packed = hasattr(pipe, "_unpack_latents") and hasattr(pipe, "_pack_latents")
    sign = -1.0 if any(name.startswith(k) for k in NEGATED_OUTPUT) else 1.0
    return first is not None, bool(first), packed, sign


def call_arg_names(pipe: Any) -> tuple[str, str]:
    """(CFG scale, prompt mask) argument names of ``pipe(...)``: ``true_cfg_scale`` where it
    exists (Flux, Qwen-Image: their ``guidance_scale`` is the distilled-guidance embedding), else
    ``guidance_scale``; ``prompt_embeds_mask`` (Qwen-Image) or ``prompt_attention_mask``."""
    params = inspect.signature(pipe.__call__).parameters
    return (
        "true_cfg_scale" if "true_cfg_scale" in params else "guidance_scale",
        "prompt_embeds_mask" if "prompt_embeds_mask" in params else "prompt_attention_mask",
    )


def is_modular(pipe: Any) -> bool:
    """Whether ``pipe`` is a Modular Diffusers pipeline (CFG through its ``guider``)."""
    return any(c.__name__ == "ModularPipeline" for c in type(pipe).__mro__)


def autoencoder(pipe: Any) -> Any:
    """The pipeline's latent autoencoder (``vae``, Kandinsky's ``movq``), None for pixel space."""
    vae = getattr(pipe, "vae", None)
    return vae if vae is not None else getattr(pipe, "movq", None)


def latent_scale(pipe: Any) -> int:
    """Pixels per latent (``vae_scale_factor``, Kandinsky's ``movq_scale_factor``; 1 in pixel space)."""
    if autoencoder(pipe) is None:
        return 1
    return int(getattr(pipe, "vae_scale_factor", None) or getattr(pipe, "movq_scale_factor", None) or 1)


def condition_path(denoiser: torch.nn.Module) -> tuple[str, ...]:
    """Where a denoiser call receives the prompt's condition: ``encoder_hidden_states``, or for a
    UNet fed image embeddings (Kandinsky 2.2: ``encoder_hid_dim_type="image_proj"``)
    ``added_cond_kwargs["image_embeds"]``."""
    if getattr(denoiser.config, "encoder_hid_dim_type", None) == "image_proj":
        return ("added_cond_kwargs", "image_embeds")
    return ("encoder_hidden_states",)


def cfg_scale_hint(pipe: Any, scale_arg: str) -> str:
    """How to turn CFG on for ``pipe``, in words (the end of a "not doing CFG" line)."""
    if is_modular(pipe):
        return "give it guider=ClassifierFreeGuidance(guidance_scale > 1) (pipe.update_components)"
    if scale_arg == "true_cfg_scale":
        return "pass true_cfg_scale > 1 and a negative_prompt"
    return "pass guidance_scale > 1"


def value_at(root: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` given the value ``root`` of its first element (an argument), following
    dict keys (``added_cond_kwargs["text_embeds"]``); None if absent."""
    for key in path[1:]:
        root = root.get(key) if isinstance(root, dict) else None
    return root


def replace_at(root: Any, path: tuple[str, ...], value: Any) -> Any:
    """``root`` (the value of ``path[0]``) with the value at ``path`` set to ``value`` (dicts copied)."""
    if len(path) == 1:
        return value
    return {**root, path[1]: replace_at(root.get(path[1]), path[1:], value)}


def cfg_off_line(pipe: Any, denoiser: torch.nn.Module, two_call: bool, batch: int, scale_arg: str) -> str | None:
    """One line when a denoiser call of ``batch`` rows is not a CFG step (see
    :meth:`reschrom.models.adapters.PipelineAdapter.cfg_off`), else None."""
    name, den, how = type(pipe).__name__, type(denoiser).__name__, cfg_scale_hint(pipe, scale_arg)
    if two_call:
        return f"{name} is not doing CFG: its {den} got one call on a step's x_t, not a conditional and an unconditional one; {how}"
    if batch % 2 == 0 and getattr(pipe, "do_classifier_free_guidance", None) is not False:
        return None
    return f"{name} is not doing CFG: its {den} got one batch of {batch} per step, not an [uncond, cond] pair; {how}"


def configured_call(pipe: Any, scale_arg: str) -> dict[str, Any]:
    """The extra ``pipe(...)`` arguments of the pipeline's registry entry (``models.<name>.call``,
    kept by :func:`reschrom.models.registry.load_model` as ``pipe.reschrom_call_kwargs``); one line
    if they set ``scale_arg``, the CFG scale that the stage's ``guidance_scale`` sets."""
    kw = dict(getattr(pipe, "reschrom_call_kwargs", None) or {})
    if scale_arg in kw:
        raise ValueError(
            f"{type(pipe).__name__}: the model entry's call sets {scale_arg}, the CFG scale that the stage's "
            "guidance_scale sets; remove it from call"
        )
    return kw
