"""Tiny random-weight diffusers pipelines of every family, built offline (test-only).

One builder per family the adapter layer (:mod:`reschrom.models.adapters`) knows:

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
:func:`reschrom.models.builders.build_word_tokenizer`. Weights are drawn after ``torch.manual_seed(seed)``
(deterministic for a given seed). Benchmarks import this module with ``tests/helpers/`` on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from reschrom.models.builders import build_word_tokenizer
from reschrom.models.pipelines import IF_SCHEDULER_CONFIG, SD_SCHEDULER_CONFIG

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


def build_tiny_sdxl_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 32,
):
    """A random-weight ``StableDiffusionXLPipeline`` on ``resolution/2`` latents (4 channels).

    SDXL's layout: a ``CLIPTextModel`` and a ``CLIPTextModelWithProjection`` (hidden width
    ``text_dim`` each, concatenated to ``cross_attention_dim = 2·text_dim``), a UNet with
    ``addition_embed_type="text_time"`` fed the pooled embedding of the second encoder
    (``added_cond_kwargs["text_embeds"]``) and the six size/crop ``time_ids``, SD's
    ``DDIMScheduler`` configuration.
    """
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok1 = build_word_tokenizer(texts)
    tok2 = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=resolution // 2,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * time_dim + text_dim,
        cross_attention_dim=2 * text_dim,
        norm_num_groups=8,
    )
    enc1 = CLIPTextModel(_clip_config(tok1, text_dim))
    enc2 = CLIPTextModelWithProjection(_clip_config(tok2, text_dim, projection_dim=text_dim))
    pipe = StableDiffusionXLPipeline(
        vae=_tiny_vae(resolution),
        text_encoder=enc1.eval(),
        text_encoder_2=enc2.eval(),
        tokenizer=tok1,
        tokenizer_2=tok2,
        unet=unet.eval(),
        scheduler=DDIMScheduler(**SD_SCHEDULER_CONFIG),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _t5_config(tokenizer, text_dim: int):
    from transformers import T5Config

    return T5Config(
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


def build_tiny_auraflow_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 32,
    shift: float = 1.73,
):
    """A random-weight ``AuraFlowPipeline`` on ``resolution/2`` latents (4 channels).

    ``AuraFlowTransformer2DModel`` (patch 2, one MMDiT and one single-DiT layer), a tiny
    ``UMT5EncoderModel``, ``FlowMatchEulerDiscreteScheduler(shift=shift)``. AuraFlow's loop
    passes the transformer σ itself (``t / 1000``), not σ·1000 as SD3 does.
    """
    from diffusers import AuraFlowPipeline, AuraFlowTransformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import UMT5EncoderModel

    tok = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    latent = resolution // 2
    transformer = AuraFlowTransformer2DModel(
        sample_size=latent,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=text_dim,
        caption_projection_dim=16,
        out_channels=4,
        pos_embed_max_size=(latent // 2) ** 2,
    )
    enc = UMT5EncoderModel(_t5_config(tok, text_dim))
    pipe = AuraFlowPipeline(
        tokenizer=tok,
        text_encoder=enc.eval(),
        vae=_tiny_vae(resolution),
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_pixart_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 32,
    sigma: bool = False,
):
    """A random-weight ``PixArtAlphaPipeline`` (``sigma=True``: ``PixArtSigmaPipeline``) on
    ``resolution/2`` latents: ``PixArtTransformer2DModel`` with learned variance (8 = 2·4 output
    channels), a tiny ``T5EncoderModel`` whose attention mask the transformer also gets
    (``encoder_attention_mask``), ``DPMSolverMultistepScheduler`` (ε). Call it with
    ``use_resolution_binning=False`` (the bins exist only for the released sizes)."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        PixArtAlphaPipeline,
        PixArtSigmaPipeline,
        PixArtTransformer2DModel,
    )
    from transformers import T5EncoderModel

    tok = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    transformer = PixArtTransformer2DModel(
        sample_size=resolution // 2,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=text_dim,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    enc = T5EncoderModel(_t5_config(tok, text_dim))
    cls = PixArtSigmaPipeline if sigma else PixArtAlphaPipeline
    pipe = cls(
        tokenizer=tok,
        text_encoder=enc.eval(),
        vae=_tiny_vae(resolution),
        transformer=transformer.eval(),
        scheduler=DPMSolverMultistepScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_flux_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 32,
):
    """A random-weight ``FluxPipeline`` (true CFG with ``true_cfg_scale`` and a negative
    prompt: two transformer calls per step) on 2×2-packed latents: ``FluxTransformer2DModel``
    (16 = 4·2·2 input channels), a CLIP (pooled) and a T5 text encoder, FLUX.1-dev's
    ``FlowMatchEulerDiscreteScheduler`` (dynamic shifting: μ from the image sequence length)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5EncoderModel

    tok1 = build_word_tokenizer(texts)
    tok2 = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_dim,
        pooled_projection_dim=text_dim,
        axes_dims_rope=(4, 4, 8),
    )
    # FLUX.1-dev's scheduler: dynamic shifting, μ from the image sequence length
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=_tiny_vae(resolution, shift_factor=0.0, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModel(_clip_config(tok1, text_dim)).eval(),
        tokenizer=tok1,
        text_encoder_2=T5EncoderModel(_t5_config(tok2, text_dim)).eval(),
        tokenizer_2=tok2,
        transformer=transformer.eval(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _gemma2(tokenizer, hidden: int = 16):
    from transformers import Gemma2Config, Gemma2Model

    return Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=512,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=1,
        )
    ).eval()


def build_tiny_lumina2_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 16,
):
    """A random-weight ``Lumina2Pipeline`` on ``resolution/2`` latents (4 channels): a tiny
    ``Lumina2Transformer2DModel`` (patch 2), a tiny ``Gemma2Model`` text encoder (its
    second-to-last hidden states, masked), ``FlowMatchEulerDiscreteScheduler``. Its loop calls
    the transformer twice per step (conditional, then unconditional), gives it 1 − σ and
    negates its output."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel

    tok = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    transformer = Lumina2Transformer2DModel(
        sample_size=resolution // 2,
        patch_size=2,
        in_channels=4,
        hidden_size=16,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=2,
        multiple_of=16,
        axes_dim_rope=(4, 2, 2),
        axes_lens=(300, 16, 16),
        cap_feat_dim=text_dim,
    )
    pipe = Lumina2Pipeline(
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=6.0),
        vae=_tiny_vae(resolution),
        text_encoder=_gemma2(tok, text_dim),
        tokenizer=tok,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_cogview4_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 32,
):
    """A random-weight ``CogView4Pipeline`` on ``resolution/2`` latents (4 channels): a tiny
    ``CogView4Transformer2DModel`` (patch 2), a tiny ``GlmModel`` text encoder, CogView4's
    ``FlowMatchEulerDiscreteScheduler`` (dynamic, linear time shift: its σ are shifted, the
    timesteps it gives the transformer are not). Two transformer calls per step."""
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import GlmConfig, GlmModel

    tok = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    transformer = CogView4Transformer2DModel(
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=4,
        out_channels=4,
        text_embed_dim=text_dim,
        time_embed_dim=8,
        condition_dim=4,
    )
    enc = GlmModel(
        GlmConfig(
            vocab_size=len(tok),
            hidden_size=text_dim,
            intermediate_size=2 * text_dim,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            pad_token_id=0,
            eos_token_id=1,
        )
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_shift=0.25, max_shift=0.75, base_image_seq_len=256, use_dynamic_shifting=True, time_shift_type="linear"
    )
    pipe = CogView4Pipeline(tokenizer=tok, text_encoder=enc, vae=_tiny_vae(resolution), transformer=transformer.eval(),
                            scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_sana_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 16,
    scheduler: str = "euler",
):
    """A random-weight ``SanaPipeline`` on ``resolution/2`` latents (4 channels): a tiny
    ``SanaTransformer2DModel``, a tiny ``Gemma2Model``, a tiny ``AutoencoderDC`` and either
    ``FlowMatchEulerDiscreteScheduler(shift=3)`` (``"euler"``) or the scheduler Sana's released
    checkpoints use, ``DPMSolverMultistepScheduler(prediction_type="flow_prediction",
    use_flow_sigmas=True, flow_shift=3)`` (``"dpm"``). Call it with
    ``use_resolution_binning=False`` and ``complex_human_instruction=None``."""
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )

    tok = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=text_dim,
        sample_size=resolution // 2,
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    ).eval()
    if scheduler == "dpm":
        sched = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    else:
        sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = SanaPipeline(tokenizer=tok, text_encoder=_gemma2(tok, text_dim), vae=vae, transformer=transformer.eval(),
                        scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_qwenimage_pipeline(
    resolution: int = 16,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 16,
):
    """A random-weight ``QwenImagePipeline`` (true CFG with ``true_cfg_scale`` and a negative
    prompt: two transformer calls per step, the guided velocity rescaled to the conditional
    one's norm) on 2×2-packed latents: ``QwenImageTransformer2DModel`` (16 = 4·2·2 input
    channels), a tiny ``Qwen2_5_VLForConditionalGeneration`` text encoder, a tiny
    ``AutoencoderKLQwenImage`` (scale factor 4), ``FlowMatchEulerDiscreteScheduler`` with
    dynamic shifting."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = build_word_tokenizer(list(texts) + ["system user assistant im_start im_end describe image"])
    tok.model_max_length = 1024
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_dim,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    n = len(tok)
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": text_dim,
            "intermediate_size": text_dim,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": n + 8,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
        },
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": text_dim},
        hidden_size=text_dim,
        vocab_size=n + 8,
        vision_start_token_id=n + 1,
        vision_end_token_id=n + 2,
        vision_token_id=n + 3,
        image_token_id=n + 4,
        video_token_id=n + 5,
    )
    enc = Qwen2_5_VLForConditionalGeneration(config).eval()
    z = 4
    vae = AutoencoderKLQwenImage(
        base_dim=z * 6, z_dim=z, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
        latents_mean=[0.0] * z, latents_std=[1.0] * z,
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192,
        shift_terminal=0.02,
    )
    pipe = QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=enc, tokenizer=tok, transformer=transformer.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_hunyuandit_pipeline(
    resolution: int = 64,
    seed: int = 0,
    texts: Iterable[str] = DEFAULT_VOCAB_TEXTS,
    text_dim: int = 16,
):
    """A random-weight ``HunyuanDiTPipeline`` on ``resolution/8`` latents (4 channels): a tiny
    ``HunyuanDiT2DModel`` with learned variance (8 = 2·4 output channels), HunyuanDiT's two text
    streams (a ``BertModel`` in CLIP's place, 77 tokens, and a ``T5EncoderModel`` in mT5's, 256
    tokens, each with its attention mask), a tiny ``AutoencoderKL`` of scale factor 8 (the loop
    sizes its rotary grid by ``height // 8``) and ``DDPMScheduler`` with v prediction, as the
    released checkpoints."""
    from diffusers import AutoencoderKL, DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel, T5EncoderModel

    tok1 = build_word_tokenizer(texts)
    tok2 = build_word_tokenizer(texts)
    tok2.model_max_length = 256
    torch.manual_seed(seed)
    transformer = HunyuanDiT2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        patch_size=2,
        sample_size=resolution // 8,
        hidden_size=16,
        num_layers=2,
        cross_attention_dim=text_dim,
        cross_attention_dim_t5=text_dim,
        pooled_projection_dim=8,
    )
    bert = BertModel(
        BertConfig(
            vocab_size=len(tok1), hidden_size=text_dim, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=2 * text_dim, max_position_embeddings=80, pad_token_id=0,
        ),
        add_pooling_layer=False,
    )
    t5 = T5EncoderModel(_t5_config(tok2, text_dim))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        sample_size=resolution,
    ).eval()
    sched = DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.03, prediction_type="v_prediction",
        clip_sample=False, steps_offset=1, timestep_spacing="leading",
    )
    pipe = HunyuanDiTPipeline(
        vae=vae, text_encoder=bert.eval(), tokenizer=tok1, transformer=transformer.eval(), scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False, text_encoder_2=t5.eval(),
        tokenizer_2=tok2,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_kandinsky22_pipeline(resolution: int = 32, seed: int = 0, embed_dim: int = 16):
    """A random-weight ``KandinskyV22Pipeline`` (the decoder of Kandinsky 2.2) on
    ``resolution/2`` latents (4 channels): a UNet conditioned on an image embedding
    (``addition_embed_type="image"``: ``added_cond_kwargs["image_embeds"]``, no text) with learned
    variance (8 = 2·4 output channels), a tiny ``VQModel`` (MoVQ) and ``DDPMScheduler`` (ε) as the
    released decoder. Its conditions are CLIP image embeddings (from the prior pipeline in real use):
    call it with ``image_embeds`` and ``negative_image_embeds`` of shape (1, ``embed_dim``)."""
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=resolution // 2,
        in_channels=4,
        out_channels=8,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        attention_head_dim=8,
        norm_num_groups=8,
        encoder_hid_dim=embed_dim,
        encoder_hid_dim_type="image_proj",
        addition_embed_type="image",
        class_embed_type=None,
        only_cross_attention=False,
        cross_attention_dim=16,
        resnet_time_scale_shift="scale_shift",
    )
    movq = VQModel(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    sched = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        steps_offset=1, prediction_type="epsilon", thresholding=False,
    )
    pipe = KandinskyV22Pipeline(unet=unet.eval(), scheduler=sched, movq=movq.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_sdxl_modular_pipeline(resolution: int = 16, seed: int = 0, guidance_scale: float = 3.0, **kw):
    """A Modular Diffusers ``StableDiffusionXLModularPipeline`` (``StableDiffusionXLAutoBlocks``)
    over the components of :func:`build_tiny_sdxl_pipeline`, with a ``ClassifierFreeGuidance``
    guider of ``guidance_scale``: its denoise loop runs one batch-1 UNet call per condition
    (conditional first) and lets the guider combine them. Call it with ``output="latents"``."""
    from diffusers.guiders import ClassifierFreeGuidance
    from diffusers.modular_pipelines import StableDiffusionXLAutoBlocks

    classic = build_tiny_sdxl_pipeline(resolution, seed, **kw)
    pipe = StableDiffusionXLAutoBlocks().init_pipeline()
    comps = {k: v for k, v in classic.components.items() if v is not None}
    pipe.update_components(**comps, guider=ClassifierFreeGuidance(guidance_scale=guidance_scale))
    return pipe
