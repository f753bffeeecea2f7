"""Diffusers text-to-image pipelines: the one real loader and the reference scheduler configs.

The project writes no model, scheduler or pipeline by hand (DESIGN.md, Architecture). Here:

* :func:`load_pipeline` — ``DiffusionPipeline.from_pretrained``: the same call loads
  DeepFloyd/IF-I-XL-v1.0 or SD 1.5 on a cluster and a local folder (the toy model) here;
* :func:`resolve_device`, :func:`resolve_dtype` — ``auto`` device and dtype;
* :data:`IF_SCHEDULER_CONFIG`, :data:`SD_SCHEDULER_CONFIG` — the schedulers of DeepFloyd IF
  stage I and Stable Diffusion 1.5.

The library's one tokenizer builder is :func:`reschrom.models.builders.build_word_tokenizer`; tiny
random-weight pipelines of every family (for tests and benchmarks) live in ``tests/helpers/builders.py``.
Nothing here touches the network except :func:`load_pipeline` given a hub id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

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
):
    """Load any diffusers pipeline with ``DiffusionPipeline.from_pretrained`` and move it.

    ``name_or_path`` is a local folder written by ``save_pretrained`` (the toy model, the tiny
    builders' output) or a hub id (``DeepFloyd/IF-I-XL-v1.0``, SD 1.5) on a machine with
    access. For float16 on a hub id the ``fp16`` variant is requested when it exists.
    IF's safety checker and watermarker are dropped (``None``): the probe studies the denoiser,
    and they would download extra weights. A folder whose UNet is a
    :class:`reschrom.models.precondition.PreconditionedUNet2DConditionModel` imports that module first
    (or its alias ``reschrom.precondition``, named by folders saved before the subpackages).
    Extra ``kwargs`` go to ``from_pretrained``.
    """
    from diffusers import DiffusionPipeline

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    path = str(name_or_path)
    local = os.path.isdir(path)
    if not local and os.path.sep in path and path.startswith((".", "/", "results")):
        raise FileNotFoundError(f"pipeline folder not found: {path}")
    kw: dict[str, Any] = {"dtype": dt}
    if local:
        import json

        from reschrom.io import check_model_folder

        check_model_folder(path)
        # components saved as None (an SD3 folder without its T5 encoder, IF without a safety
        # checker) must be passed as None again, or from_pretrained looks for them
        index = json.loads((Path(path) / "model_index.json").read_text())
        kw.update({k: None for k, v in index.items() if isinstance(v, list) and v[:2] == [None, None]})
        # diffusers loads a custom class only from an imported module; folders saved before the
        # library had subpackages name the alias reschrom.precondition (tests/models/test_precondition.py)
        if any(isinstance(v, list) and v[:1] in (["reschrom.models.precondition"], ["reschrom.precondition"])
               for v in index.values()):
            import reschrom.precondition  # noqa: F401  (the alias; it imports reschrom.models.precondition)
    if not local and "IF-" in path:
        kw.update(safety_checker=None, watermarker=None, feature_extractor=None)
        if dt == torch.float16:
            kw["variant"] = "fp16"
    kw.update(kwargs)
    pipe = DiffusionPipeline.from_pretrained(path, **kw)
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe
