"""Diffusers text-to-image pipelines: offline tiny builders and the one real loader.

The project writes no model, scheduler or pipeline by hand (DESIGN.md, Architecture). Here:

* :func:`build_word_tokenizer` — a word-level tokenizer (``tokenizers`` WordLevel) wrapped as a
  transformers fast tokenizer, which ``IFPipeline`` and ``StableDiffusionPipeline`` call like
  their T5/CLIP tokenizers (padding to ``max_length``, truncation, attention mask).
* :func:`build_tiny_if_pipeline` — a random-weight ``IFPipeline`` (stage I layout: pixel-space
  UNet with ``out_channels = 2·C`` for IF's learned variance, a tiny ``T5EncoderModel`` and IF's
  DDPM scheduler configuration), for tests, benchmarks and as the toy model's skeleton.
* :func:`build_tiny_sd_pipeline` — a random-weight ``StableDiffusionPipeline`` (tiny UNet,
  ``AutoencoderKL`` and ``CLIPTextModel``), for tests.
* :func:`load_pipeline` — ``DiffusionPipeline.from_pretrained``: the same call loads
  DeepFloyd/IF-I-XL-v1.0 or SD 1.5 on a cluster and a local folder (the toy model) here.

Nothing here touches the network except :func:`load_pipeline` given a hub id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import torch

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>", "<s>")
"""Ids 0…3: pad, end-of-sequence (T5's ``</s>``, CLIP's pooled token), unknown, begin."""

IF_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "variance_type": "learned_range",
    "prediction_type": "epsilon",
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "thresholding": True,
    "dynamic_thresholding_ratio": 0.95,
    "sample_max_value": 1.5,
    "timestep_spacing": "leading",
}
"""The scheduler configuration of DeepFloyd IF stage I (``DDPMScheduler``)."""

SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}
"""The scheduler configuration of Stable Diffusion 1.5 (used with ``DDIMScheduler``)."""

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _words(texts: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for text in texts:
        for w in _WORD.findall(str(text).lower()):
            seen.setdefault(w, None)
    return list(seen)


def build_word_tokenizer(texts: Iterable[str], model_max_length: int = 77, extra_vocab: int = 0):  # noqa: ANN201
    """A word-level fast tokenizer whose vocabulary is the (lower-cased) words of ``texts``.

    Words are split on whitespace and punctuation (each punctuation mark is a token); unknown
    words map to ``<unk>``. Every encoding ends with ``</s>`` (as T5's does, and CLIP's pooled
    output reads the first end-of-sequence token). ``extra_vocab`` reserves unused ids.
    Returns a ``transformers.PreTrainedTokenizerFast`` that saves and loads with
    ``save_pretrained``/``from_pretrained`` like any pipeline tokenizer.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for w in _words(texts):
        vocab.setdefault(w, len(vocab))
    for i in range(extra_vocab):
        vocab.setdefault(f"<extra_{i}>", len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
        model_max_length=model_max_length,
        padding_side="right",
    )


DEFAULT_VOCAB_TEXTS = (
    "a an the of on in with and photo hd cute corgi house floating air teddy bear playing guitar "
    "astronaut riding horse robot dancing moon oil painting red green blue circle square triangle "
    "stripes dots small large",
)


def _seeded(seed: int):  # noqa: ANN202
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    return g


def build_tiny_if_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    channels: int = 3,
    block_out_channels: tuple[int, ...] = (32, 64),
    text_dim: int = 32,
):  # noqa: ANN201
    """A random-weight ``IFPipeline`` with IF stage I's structure, built offline.

    UNet2DConditionModel in pixel space with ``out_channels = 2·channels`` (ε and IF's learned
    variance range), text conditioning through ``encoder_hid_dim`` and IF's ``"text"`` addition
    embedding, a 2-layer ``T5EncoderModel`` of width ``text_dim``, IF's ``DDPMScheduler`` config
    (:data:`IF_SCHEDULER_CONFIG`); safety checker, feature extractor and watermarker are None.
    Weights are drawn with ``torch.manual_seed(seed)`` (deterministic for a given seed).
    """
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_word_tokenizer(texts)
    _seeded(seed)
    n = len(block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=2 * channels,
        layers_per_block=1,
        block_out_channels=tuple(block_out_channels),
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * (n - 1),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D",) * (n - 1) + ("ResnetUpsampleBlock2D",),
        cross_attention_dim=block_out_channels[0],
        encoder_hid_dim=text_dim,
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
        norm_num_groups=8,
    )
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=text_dim,
            d_kv=8,
            d_ff=2 * text_dim,
            num_layers=2,
            num_heads=4,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    scheduler = DDPMScheduler(**IF_SCHEDULER_CONFIG)
    pipe = IFPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder.eval(),
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_sd_pipeline(
    resolution: int = 32,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 32,
):  # noqa: ANN201
    """A random-weight ``StableDiffusionPipeline``, built offline.

    Tiny ``AutoencoderKL`` with two blocks (VAE scale factor 2: ``resolution`` pixels are
    ``resolution/2`` latents, 4 channels), tiny UNet2DConditionModel on the latents, tiny
    ``CLIPTextModel`` with the word-level tokenizer, SD 1.5's scheduler config on a
    ``DDIMScheduler``; safety checker and feature extractor None.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_word_tokenizer(texts)
    _seeded(seed)
    unet = UNet2DConditionModel(
        sample_size=resolution // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=resolution,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_dim,
            intermediate_size=2 * text_dim,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=tokenizer.model_max_length,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=3,
        )
    )
    scheduler = DDIMScheduler(**SD_SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA if available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto``/None → float16 on CUDA, float32 on CPU; names map to torch dtypes."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is unknown; allowed: auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def load_pipeline(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = "auto",
    **kwargs: Any,
):  # noqa: ANN201
    """Load any diffusers pipeline with ``DiffusionPipeline.from_pretrained`` and move it.

    ``name_or_path`` is a local folder written by ``save_pretrained`` (the toy model, the tiny
    builders' output) or a hub id (``DeepFloyd/IF-I-XL-v1.0``, SD 1.5) on a machine with
    access. For float16 on a hub id the ``fp16`` variant is requested when it exists.
    IF's safety checker and watermarker are dropped (``None``): the probe studies the denoiser,
    and they would download extra weights. Extra ``kwargs`` go to ``from_pretrained``.
    """
    from diffusers import DiffusionPipeline

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    path = str(name_or_path)
    local = os.path.isdir(path)
    if not local and os.path.sep in path and path.startswith((".", "/", "results")):
        raise FileNotFoundError(f"pipeline folder not found: {path}")
    if local:
        from reschrom.io import check_model_folder

        check_model_folder(path)
    kw: dict[str, Any] = {"dtype": dt}
    if not local and "IF-" in path:
        kw.update(safety_checker=None, watermarker=None, feature_extractor=None)
        if dt == torch.float16:
            kw["variant"] = "fp16"
    kw.update(kwargs)
    pipe = DiffusionPipeline.from_pretrained(path, **kw)
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe
