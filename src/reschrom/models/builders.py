"""Toy models built from config: diffusers UNets, a tiny T5 text encoder, a word-level tokenizer.

Every model the workflow trains is a diffusers pipeline folder written with ``save_pretrained``
and read back with ``DiffusionPipeline.from_pretrained``, the same call that loads DeepFloyd IF
on a cluster:

- unconditional models (the low-resolution DDPM of eq. 20, the residual predictor of eq. 21
  and the per-level predictors of eq. 23) as a ``DDPMPipeline`` (``unet/`` + ``scheduler/``);
- the text-conditional model as an ``IFPipeline``: ``UNet2DConditionModel`` + a from-scratch
  ``T5EncoderModel`` + a word-level tokenizer built with the ``tokenizers`` package;
- its rectified-flow twin (``objective: flow_matching``) as the same components plus a
  ``FlowMatchEulerDiscreteScheduler``, each saved with ``save_pretrained`` into its subfolder
  and loaded by :class:`reschrom.models.flow.FlowTextToImage` (no ``model_index.json``: diffusers has
  no pixel-space flow pipeline to load it).

No class here is written by hand; this module only maps config blocks to constructors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"

DDPM_COMPATIBLE = ("ddpm", "cosine")


def build_noise_scheduler(name: str, spec: Mapping[str, Any]) -> Any:
    """A diffusers ``DDPMScheduler`` for the schedule ``schedules.<name>`` of the config.

    ``type: ddpm`` maps one to one; ``type: cosine`` becomes diffusers' ``squaredcos_cap_v2``
    (the Nichol–Dhariwal cosine with β clipped at 0.999). Continuous schedules (natural, flow
    matching, EDM) have no DDPM training counterpart and raise a ``ValueError`` naming them.
    """
    from diffusers import DDPMScheduler

    kind = spec.get("type")
    if kind == "ddpm":
        return DDPMScheduler(
            num_train_timesteps=int(spec.get("num_train_timesteps", 1000)),
            beta_start=float(spec.get("beta_start", 1e-4)),
            beta_end=float(spec.get("beta_end", 0.02)),
            beta_schedule=spec.get("beta_schedule", "linear"),
            rescale_betas_zero_snr=bool(spec.get("rescale_betas_zero_snr", False)),
            variance_type="fixed_small",
            clip_sample=True,
        )
    if kind == "cosine":
        return DDPMScheduler(
            num_train_timesteps=int(spec.get("num_train_timesteps", 1000)),
            beta_schedule="squaredcos_cap_v2",
            variance_type="fixed_small",
            clip_sample=True,
        )
    if kind == "diffusers":
        from diffusers import DDPMScheduler as _D

        return _D.from_pretrained(spec["path"]) if os.path.isdir(spec["path"]) else _D.from_config(
            _D.load_config(spec["path"])
        )
    raise ValueError(
        f"schedule {name!r} has type {kind!r}, which has no DDPM training scheduler; "
        f"use one of type: {', '.join(DDPM_COMPATIBLE)}"
    )


def _block_types(attention: list[bool], down: bool, cross: bool = False) -> tuple[str, ...]:
    if down:
        plain, attn = "DownBlock2D", ("CrossAttnDownBlock2D" if cross else "AttnDownBlock2D")
        return tuple(attn if a else plain for a in attention)
    plain, attn = "UpBlock2D", ("CrossAttnUpBlock2D" if cross else "AttnUpBlock2D")
    return tuple(attn if a else plain for a in reversed(attention))


def _attention_flags(cfg: Mapping[str, Any]) -> list[bool]:
    ch = list(cfg["block_out_channels"])
    att = list(cfg.get("attention", [False] * len(ch)))
    if len(att) != len(ch):
        raise ValueError(
            f"model config: attention has {len(att)} entries but block_out_channels has {len(ch)}"
        )
    return [bool(a) for a in att]


def build_unet(cfg: Mapping[str, Any], sample_size: int) -> Any:
    """An unconditional ``UNet2DModel`` (3 → 3 channels, ε-prediction) from a ``models.<name>`` block."""
    from diffusers import UNet2DModel

    att = _attention_flags(cfg)
    ch = tuple(int(c) for c in cfg["block_out_channels"])
    if sample_size < 2 ** (len(ch) - 1):
        raise ValueError(f"model config: {len(ch)} UNet blocks need images of at least {2 ** (len(ch) - 1)} px, got {sample_size}")
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=ch,
        layers_per_block=int(cfg.get("layers_per_block", 1)),
        down_block_types=_block_types(att, True),
        up_block_types=_block_types(att, False),
        norm_num_groups=int(cfg.get("norm_num_groups", 8)),
        attention_head_dim=int(cfg.get("attention_head_dim", 8)),
        dropout=float(cfg.get("dropout", 0.0)),
    )


def build_cond_unet(cfg: Mapping[str, Any], sample_size: int, cross_attention_dim: int, out_channels: int = 6,
                    cls: Any = None) -> Any:
    """A text-conditional ``UNet2DConditionModel`` (IF-style, pixel space, 3 → 6 channels).

    Like IF-I, the UNet outputs 2C channels, ε and a variance channel group; ``IFPipeline``
    splits them under classifier-free guidance. The project trains only the first C (ε); with
    the scheduler's ``variance_type="fixed_small"`` the pipeline discards the other C.
    The flow-matching model (:func:`build_flow_t2i`) asks for ``out_channels=3`` (velocity only).
    ``addition_embed_type: text`` adds diffusers' ``TextTimeEmbedding`` (attention pooling of the
    text states, added to the time embedding) as IF-I's UNet has it.
    """
    from diffusers import UNet2DConditionModel

    att = _attention_flags(cfg)
    ch = tuple(int(c) for c in cfg["block_out_channels"])
    if not any(att):
        raise ValueError("model config 'models.t2i.attention': at least one block needs cross-attention")
    return (cls or UNet2DConditionModel)(
        sample_size=sample_size,
        in_channels=3,
        out_channels=int(out_channels),
        block_out_channels=ch,
        layers_per_block=int(cfg.get("layers_per_block", 1)),
        down_block_types=_block_types(att, True, cross=True),
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=_block_types(att, False, cross=True),
        norm_num_groups=int(cfg.get("norm_num_groups", 8)),
        cross_attention_dim=int(cross_attention_dim),
        attention_head_dim=int(cfg.get("attention_head_dim", 8)),
        addition_embed_type=cfg.get("addition_embed_type"),
        # the pooling attention's heads must divide the text width
        addition_embed_type_num_heads=4 if int(cross_attention_dim) % 4 == 0 else 1,
    )


def build_text_encoder(cfg: Mapping[str, Any], vocab_size: int) -> Any:
    """A small ``T5EncoderModel`` from a ``T5Config``, trained from scratch (no weights downloaded)."""
    from transformers import T5Config, T5EncoderModel

    te = dict(cfg.get("text_encoder", {}))
    d_model = int(te.get("d_model", 64))
    heads = int(te.get("num_heads", 4))
    conf = T5Config(
        vocab_size=int(vocab_size),
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=int(te.get("d_ff", 2 * d_model)),
        num_layers=int(te.get("num_layers", 2)),
        num_heads=heads,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(conf)


def build_word_tokenizer(captions: Iterable[str]) -> Any:
    """A word-level tokenizer over the caption vocabulary, as a transformers fast tokenizer.

    Built with the ``tokenizers`` package (``WordLevel`` model, lower-casing, whitespace and
    punctuation splitting, ``</s>`` appended like T5) and wrapped in ``PreTrainedTokenizerFast``
    so that ``IFPipeline`` can call it (padding to 77, attention masks, ``save_pretrained``).
    Id 0 is ``<pad>``, 1 ``</s>``, 2 ``<unk>``; words follow in sorted order (deterministic).
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    words: set[str] = set()
    for c in captions:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(str(c))):
            words.add(w)
    vocab = {PAD: 0, EOS: 1, UNK: 2}
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=77
    )


def build_ddpm_pipeline(unet: Any, scheduler: Any) -> Any:
    """An unconditional ``DDPMPipeline`` (``unet/`` + ``scheduler/`` when saved)."""
    from diffusers import DDPMPipeline

    return DDPMPipeline(unet=unet, scheduler=scheduler)


def build_t2i_pipeline(tokenizer: Any, cfg: Mapping[str, Any], scheduler: Any | None = None,
                       sample_size: int | None = None) -> Any:
    """A from-scratch ``IFPipeline``: tokenizer + tiny T5 encoder + conditional UNet + DDPM scheduler.

    ``cfg`` is the ``models.t2i`` block (UNet sizes and a ``text_encoder`` block). The UNet has
    IF's 6 output channels (:func:`build_cond_unet`); only the first 3 (ε) are trained, and with
    ``variance_type="fixed_small"`` IFPipeline discards the rest. With ``precondition:
    flow_velocity`` in ``cfg`` the UNet is a :class:`reschrom.models.precondition.PreconditionedUNet2DConditionModel`
    (it learns the flow velocity and answers ε over the scheduler's ᾱ_t). The safety checker,
    feature extractor and watermarker are left out (``requires_safety_checker=False``).
    """
    from diffusers import DDPMScheduler, IFPipeline

    enc = build_text_encoder(cfg, len(tokenizer))
    size = int(sample_size or cfg.get("sample_size", 16))
    sched = scheduler if scheduler is not None else DDPMScheduler(variance_type="fixed_small")
    if cfg.get("precondition"):
        from reschrom.models.precondition import PreconditionedUNet2DConditionModel

        unet = build_cond_unet(cfg, size, enc.config.d_model, cls=PreconditionedUNet2DConditionModel)
        unet.set_precondition(str(cfg["precondition"]), sched.config)
    else:
        unet = build_cond_unet(cfg, size, enc.config.d_model)
    return IFPipeline(
        tokenizer=tokenizer,
        text_encoder=enc,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )


def build_flow_t2i(tokenizer: Any, cfg: Mapping[str, Any], sample_size: int | None = None) -> Any:
    """A from-scratch rectified-flow text-to-image model (:class:`reschrom.models.flow.FlowTextToImage`):
    the ``t2i`` architecture (tiny T5 + conditional UNet, ``out_channels=3``: the velocity) and a
    ``FlowMatchEulerDiscreteScheduler(shift=cfg["shift"])`` (default shift 1.0)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from reschrom.models.flow import FlowTextToImage

    enc = build_text_encoder(cfg, len(tokenizer))
    size = int(sample_size or cfg.get("sample_size", 16))
    unet = build_cond_unet(cfg, size, enc.config.d_model, out_channels=3)
    sched = FlowMatchEulerDiscreteScheduler(shift=float(cfg.get("shift", 1.0)))
    return FlowTextToImage(unet, enc, tokenizer, sched)


def load_trained_pipeline(folder: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """Load a saved model folder in float32 with :func:`reschrom.models.pipelines.load_pipeline`
    (``DiffusionPipeline.from_pretrained``) onto ``device``.

    Raises ``FileNotFoundError`` naming the folder when it has no ``model_index.json``.
    """
    from reschrom.models.pipelines import load_pipeline as _load

    p = os.fspath(folder)
    if not os.path.isfile(os.path.join(p, "model_index.json")):
        raise FileNotFoundError(f"no diffusers pipeline at {p} (model_index.json missing)")
    return _load(p, device, dtype=torch.float32)
