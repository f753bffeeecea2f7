"""Tiny random-weight diffusers pipelines of every family, built offline (test-only).

One builder per family the adapter layer (:mod:`reschrom.adapters`) knows:

* :func:`build_tiny_if_pipeline` — DeepFloyd IF stage I layout: a pixel-space
  ``UNet2DConditionModel`` with ``out_channels = 2·C`` (ε and IF's learned variance), a tiny
  ``T5EncoderModel``, IF's ``DDPMScheduler`` configuration;
* :func:`build_tiny_sd_pipeline` — Stable Diffusion: tiny ``AutoencoderKL`` (scale factor 2),
  latent UNet, ``CLIPTextModel``, SD 1.5's ``DDIMScheduler`` configuration with
  ``prediction_type`` ``epsilon`` or ``v_prediction`` (:func:`build_tiny_sd_v_pipeline`);
* :func:`build_tiny_sd3_pipeline` — Stable Diffusion 3: ``SD3Transformer2DModel`` with tiny
  dimensions, two ``CLIPTextModelWithProjection`` encoders (no T5: ``text_encoder_3=None``, the
  pipeline then feeds zeros for the T5 tokens), tiny ``AutoencoderKL`` and SD3's
  ``FlowMatchEulerDiscreteScheduler`` (shift 3).

Every tokenizer is the library's one word-level tokenizer,
:func:`reschrom.models.build_word_tokenizer`. Weights are drawn after ``torch.manual_seed(seed)``
(deterministic for a given seed). Benchmarks import this module with ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from reschrom.models import build_word_tokenizer
from reschrom.pipelines import IF_SCHEDULER_CONFIG, SD_SCHEDULER_CONFIG

DEFAULT_VOCAB_TEXTS = (
    "a an the of on in with and photo hd cute corgi house floating air teddy bear playing guitar "
    "astronaut riding horse robot dancing moon oil painting red green blue circle square triangle "
    "stripes dots small large",
)
"""Words the tiny tokenizers know (anything else maps to ``<unk>``)."""

SD3_SCHEDULER_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0}
"""Stable Diffusion 3's ``FlowMatchEulerDiscreteScheduler`` configuration."""


def build_tiny_if_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    channels: int = 3,
    block_out_channels: tuple[int, ...] = (32, 64),
    text_dim: int = 32,
):
    """A random-weight ``IFPipeline`` with IF stage I's structure (learned variance: 2C outputs)."""
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_word_tokenizer(texts)
    torch.manual_seed(seed)
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
    pipe = IFPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder.eval(),
        unet=unet.eval(),
        scheduler=DDPMScheduler(**IF_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _tiny_vae(resolution: int, latent_channels: int = 4, **kw):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=resolution,
        **kw,
    ).eval()


def _clip_config(tokenizer, text_dim: int, **kw):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_dim,
        intermediate_size=2 * text_dim,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=tokenizer.model_max_length,
        pad_token_id=0,
        eos_token_id=1,  # the pooled output reads the first </s>
        bos_token_id=0,
        **kw,
    )


def build_tiny_sd_pipeline(
    resolution: int = 32,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 32,
    prediction_type: str = "epsilon",
):
    """A random-weight ``StableDiffusionPipeline`` (VAE scale factor 2: ``resolution/2`` latents,
    4 channels) with SD 1.5's ``DDIMScheduler`` configuration and the given ``prediction_type``."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = build_word_tokenizer(texts)
    torch.manual_seed(seed)
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
    vae = _tiny_vae(resolution)
    text_encoder = CLIPTextModel(_clip_config(tokenizer, text_dim))
    scheduler = DDIMScheduler(**{**SD_SCHEDULER_CONFIG, "prediction_type": prediction_type})
    pipe = StableDiffusionPipeline(
        vae=vae,
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


def build_tiny_sd_v_pipeline(resolution: int = 32, seed: int = 0, **kw):
    """:func:`build_tiny_sd_pipeline` with ``prediction_type="v_prediction"`` (SD 2.x style)."""
    return build_tiny_sd_pipeline(resolution, seed, prediction_type="v_prediction", **kw)


def build_tiny_sd3_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 32,
    shift: float = 3.0,
):
    """A random-weight ``StableDiffusion3Pipeline`` on ``resolution/2`` latents (4 channels).

    ``SD3Transformer2DModel`` (patch 1, 2 layers, 2 heads of 8), two CLIP text encoders with
    projection (hidden and projection width ``text_dim``; the pipeline concatenates them to
    2·``text_dim`` = ``joint_attention_dim`` = ``pooled_projection_dim``), no T5,
    ``FlowMatchEulerDiscreteScheduler(shift=shift)``.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tok1 = build_word_tokenizer(texts)
    tok2 = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=resolution // 2,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=2 * text_dim,
        caption_projection_dim=16,
        pooled_projection_dim=2 * text_dim,
        pos_embed_max_size=resolution,
    )
    enc1 = CLIPTextModelWithProjection(_clip_config(tok1, text_dim, projection_dim=text_dim))
    enc2 = CLIPTextModelWithProjection(_clip_config(tok2, text_dim, projection_dim=text_dim))
    vae = _tiny_vae(resolution, shift_factor=0.0, use_quant_conv=False, use_post_quant_conv=False)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(**{**SD3_SCHEDULER_CONFIG, "shift": shift}),
        vae=vae,
        text_encoder=enc1.eval(),
        tokenizer=tok1,
        text_encoder_2=enc2.eval(),
        tokenizer_2=tok2,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
