"""Time-dependent prompt composing (paper §4.3, eq. 6): the composer.

:class:`PromptComposer` applies any of them to an unmodified diffusers CFG pipeline
(``IFPipeline``, ``StableDiffusionPipeline`` with ε or v prediction, ``StableDiffusion3Pipeline``,
the toy model, the oracle; through :class:`reschrom.models.adapters.PipelineAdapter`) without copying its
loop: a forward pre-hook on the denoiser, keyed on the timestep it receives, rewrites the
pipeline's batched [uncond, cond] call into [uncond, c_i for each *active* prompt] (weight
≠ 0 at this step; SD3's pooled embeddings are swapped alongside), and a forward hook folds the outputs back into [ε_u, ε_u + Σ_i w_i(ε_i - ε_u)],
so that the pipeline's own CFG line ``ε_u + s(ε_c - ε_u)`` yields eq. 6. A step with one active
prompt at weight 1 is the pipeline's plain call with that prompt's embedding swapped in (no
arithmetic): a Heaviside switch costs exactly the denoiser evaluations of plain CFG, and η = 0
or 1 reproduces the single-prompt images bitwise.

True-CFG loops (Flux, Qwen-Image, Lumina 2, CogView4) call the denoiser once per condition on
the same x_t: the composer pairs the calls of a step as the probe does (x_t identity, the
loop's documented order), swaps the active prompt's embeddings (and its pooled embedding or
mask) into the conditional call and leaves the unconditional one alone; with several active
prompts, or one at a weight other than 1, it evaluates the others by further calls of the
denoiser's ``forward`` on the same inputs and returns ε_u + Σ_i w_i(ε_i − ε_u) from the
conditional call (ε_u by one more call unless the weights sum to 1). A Modular Diffusers
``StableDiffusionXLModularPipeline`` with a ``ClassifierFreeGuidance`` guider is such a loop (the
guider's batch-1 calls, conditional first); it is called with the first prompt's text and the
hooks swap the active prompt's embeddings in.

Everything that belongs to a prompt is swapped with it: its text embedding, pooled embedding
(SD3, SDXL, Flux), attention mask (PixArt, Sana, Lumina 2, AuraFlow, HunyuanDiT) and further
streams (HunyuanDiT's mT5 embeddings and mask). A condition that is not text (Kandinsky 2.2's
image embeddings) is given as a :class:`~reschrom.models.families.PromptEmbeddings` instead of a
prompt string.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reschrom.compose.weights import WeightFn
from reschrom.models.adapters import PipelineAdapter
from reschrom.models.families import PromptEmbeddings, is_modular

# --------------------------------------------------------------------------------------
# prompt encoding through the pipeline's own encoder
# --------------------------------------------------------------------------------------


def encode_prompt(
    pipe: Any, prompt: str, device: torch.device | str | None = None, negative_prompt: str | None = None
) -> PromptEmbeddings:
    """(cond, uncond, pooled_cond, pooled_uncond) of one prompt by the pipeline's ``encode_prompt``.

    Through :meth:`reschrom.models.adapters.PipelineAdapter.encode_prompt`: only the arguments the
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

    Works for every family of :class:`reschrom.models.adapters.PipelineAdapter` (IF, SD with ε or v
    prediction, SD3 flow matching, the oracle). ``prompts[i]`` is weighted by
    ``weights[i](t/T)`` (t the denoiser's timestep, T ``num_train_timesteps``: for flow matching
    t/T = σ); prompts whose |weight| ≤ ``prune_below`` at a step are not evaluated (a negative
    ``prune_below`` evaluates every prompt at every step: the naive composition, for
    comparison). Call it like the pipeline, minus the prompt arguments:
    ``composer(generator=g, guidance_scale=7.5, num_inference_steps=50, output_type="np")``.
    ``records`` lists, per denoiser call of the last run, the active prompts and batch rows.
    ``encode_kwargs`` go to the pipeline's ``encode_prompt`` where its signature names them
    (``max_sequence_length``, Sana's ``complex_human_instruction``): the same as the call's.
    """

    pipe: Any
    prompts: Sequence[str | PromptEmbeddings]
    weights: Sequence[WeightFn]
    negative_prompt: str | None = None
    prune_below: float = 0.0
    device: torch.device | str | None = None
    records: list[StepRecord] = field(default_factory=list)
    encode_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.prompts) != len(self.weights) or not self.prompts:
            raise ValueError(
                f"need one weight per prompt, got {len(self.prompts)} prompts and {len(self.weights)} weights"
            )
        self.adapter = PipelineAdapter.for_pipeline(self.pipe)
        embeds = [
            p
            if isinstance(p, PromptEmbeddings)
            else self.adapter.encode_prompt(p, self.device, self.negative_prompt, **dict(self.encode_kwargs))
            for p in self.prompts
        ]
        if is_modular(self.pipe) and not isinstance(self.prompts[0], str):
            raise ValueError(f"{type(self.pipe).__name__}: a Modular pipeline is composed from prompt strings")
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
        # further per-prompt streams (HunyuanDiT's mT5 embeddings and mask): stream j of prompt i
        self.streams = [e.extra for e in embeds]
        self.num_train_timesteps = self.adapter.num_train_timesteps
        self._plan: tuple | None = None
        self._last_x: torch.Tensor | None = None  # two-call loops: the x_t of the last call

    @property
    def denoiser(self) -> torch.nn.Module:
        """The module the pipeline calls once per step (``unet``, or ``transformer``)."""
        return self.adapter.denoiser

    def weights_at(self, t_frac: float) -> list[float]:
        return [float(w(t_frac)) for w in self.weights]

    # -- hooks -----------------------------------------------------------------------

    def _swap_one(self, args: tuple, kwargs: dict, i: int | None) -> tuple[tuple, dict]:
        """A two-call loop's call with prompt ``i``'s embeddings (None: the unconditional ones),
        its pooled embedding and its mask swapped in, for every image of the batch."""
        a = self.adapter
        ehs = a.embeds(args, kwargs)
        N = ehs.shape[0]

        def rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return v.to(like.device, like.dtype).expand(N, *v.shape[1:])

        emb = self.uncond if i is None else self.cond[i]
        args, kwargs = a.with_embeds(args, kwargs, rows(emb, ehs))
        pooled = a.pooled_at(args, kwargs)
        if pooled is not None and self.pooled is not None:
            p = self.pooled_uncond if i is None else self.pooled[i]
            args, kwargs = a.with_pooled(args, kwargs, rows(p, pooled))
        mask = a.arg(args, kwargs, a.mask_arg, None) if a.mask_arg else None
        if mask is not None and self.masks is not None:
            m = self.mask_uncond if i is None else self.masks[i]
            args, kwargs = a.with_arg(args, kwargs, a.mask_arg, rows(m, mask))
        for j, (arg, _, _, u) in enumerate(self.streams[0]):
            v = a.arg(args, kwargs, arg, None)
            if v is not None:
                args, kwargs = a.with_arg(args, kwargs, arg, rows(u if i is None else self.streams[i][j][2], v))
        return args, kwargs

    def _pre_hook_two_call(self, module, args, kwargs):
        a = self.adapter
        sample = a.sample(args, kwargs)
        first = self._last_x is not sample
        self._last_x = sample
        if first != a.cond_first:  # the unconditional call: the pipeline's own negative embeddings
            self._plan = None
            return None
        t = a.timestep(args, kwargs)
        N = sample.shape[0]
        t_frac = a.t_over_T(t)
        w = self.weights_at(t_frac)
        active = tuple(i for i, wi in enumerate(w) if abs(wi) > self.prune_below)
        passthrough = len(active) == 1 and w[active[0]] == 1.0
        wsum = sum(w[i] for i in active)
        need_u = not passthrough and (not active or abs(wsum - 1.0) > 1e-12)
        self.records.append(
            StepRecord(_timestep_value(t), t_frac, active, tuple(w), N * (1 + len(active)), passthrough)
        )
        if not active:  # no prompt active: ε_u for the conditional prediction
            args, kwargs = self._swap_one(args, kwargs, None)
            self._plan = None
            return tuple(args), kwargs
        new_args, new_kwargs = self._swap_one(args, kwargs, active[0])
        self._plan = None if passthrough else ("two_call", args, kwargs, active, [w[i] for i in active], need_u)
        return tuple(new_args), new_kwargs

    def _post_hook_two_call(self, module, output, plan):
        _, args, kwargs, active, w, need_u = plan
        a = self.adapter
        outs = [a.output_tensor(output)]
        for i in active[1:]:  # the other active prompts: the same call, hooks bypassed
            ai, ki = self._swap_one(args, kwargs, i)
            outs.append(a.output_tensor(module.forward(*ai, **ki)))
        if need_u:
            au, ku = self._swap_one(args, kwargs, None)
            o_u = a.output_tensor(module.forward(*au, **ku))
            comb = o_u + sum(wj * (o - o_u) for wj, o in zip(w, outs))
        else:  # Σ w_i = 1: ε_u + Σ w_i(ε_i − ε_u) = Σ w_i ε_i
            comb = sum(wj * o for wj, o in zip(w, outs))
        return a.replace_output(output, comb)

    def _pre_hook(self, module, args, kwargs):
        a = self.adapter
        if not a.is_guidance_call(args, kwargs):  # SD3 skip-layer guidance: leave it alone
            self._plan = None
            return None
        if a.two_call:
            return self._pre_hook_two_call(module, args, kwargs)
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
        args, kwargs = a.with_embeds(args, kwargs, swap(ehs, self.cond))
        pooled = a.pooled_at(args, kwargs)
        if pooled is not None and self.pooled is not None:
            args, kwargs = a.with_pooled(args, kwargs, swap(pooled, self.pooled))
        mask = a.arg(args, kwargs, a.mask_arg, None) if a.mask_arg else None
        if mask is not None and self.masks is not None:
            args, kwargs = a.with_arg(args, kwargs, a.mask_arg, swap(mask, self.masks))
        for j, (arg, *_) in enumerate(self.streams[0]):
            v = a.arg(args, kwargs, arg, None)
            if v is not None:
                args, kwargs = a.with_arg(args, kwargs, arg, swap(v, [st[j][2] for st in self.streams]))
        return tuple(args), kwargs

    def _post_hook(self, module, args, kwargs, output):
        plan, self._plan = self._plan, None
        if plan is None:
            return output
        if plan[0] == "two_call":
            return self._post_hook_two_call(module, output, plan)
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
            self._last_x = None

    def embedding_kwargs(self, num_images: int = 1) -> dict[str, torch.Tensor]:
        """The ``pipe(...)`` embedding arguments of a composed run of ``num_images`` images (the
        first prompt's, repeated; the hooks swap in the active prompts' at every step)."""
        pooled = (self.pooled[0], self.pooled_uncond) if self.pooled is not None else (None, None)
        masks = (self.masks[0], self.mask_uncond) if self.masks is not None else (None, None)
        e = PromptEmbeddings(self.cond[0], self.uncond, *pooled, *masks, extra=self.streams[0]).pipeline_kwargs(
            self.adapter.mask_kwarg, self.adapter.embeds_kwarg
        )
        return {k: v.repeat_interleave(num_images, dim=0) for k, v in e.items()}

    def __call__(self, **kwargs: Any) -> Any:
        """Run the pipeline with the composed guidance; returns the pipeline's output.

        ``num_images_per_prompt`` n is passed as n copies of the embeddings (SD3's pipeline does
        not repeat given embeddings itself); the initial noise has the same shape (n, …) and so
        the same draws as the pipeline's own call with ``num_images_per_prompt=n``.
        """
        scale = self.adapter.cfg_scale_arg  # true_cfg_scale for Flux and Qwen-Image
        modular = is_modular(self.pipe)
        on = self.pipe.guider.guidance_scale if modular else kwargs.get(scale, 2.0 if scale == "guidance_scale" else 1.0)
        if on <= 1.0:
            raise ValueError(f"prompt composing needs classifier-free guidance ({scale} > 1)")
        n = int(kwargs.pop("num_images_per_prompt", None) or 1)
        self.records = []
        if modular:  # its text encoder step always encodes text: the first prompt's, swapped by the hooks
            with torch.no_grad(), self.hooks():
                return self.pipe(prompt=[self.prompts[0]] * n, negative_prompt=self.negative_prompt, **kwargs)
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


def to_chw(images: Any) -> torch.Tensor:
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
