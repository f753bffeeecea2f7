"""A rectified-flow (flow-matching) text-to-image toy model, and its denoiser adapter.

The same architecture and data as the ε-prediction ``t2i`` model (a ``UNet2DConditionModel``,
a tiny ``T5EncoderModel``, a word-level tokenizer) trained for another objective, rectified flow
as in SD3 (Esser et al. 2024):

    x_flow = (1−σ)·x0 + σ·ε,   target velocity u = ε − x0,   loss ‖u_θ(x_flow, σ, c) − u‖²,

σ drawn logit-normal (σ = sigmoid(n), n ~ N(0, 1)) and then time-shifted (:func:`time_shift`,
σ' = sσ/(1+(s−1)σ), the shift of ``schedules.FlowMatchingSchedule`` and of diffusers'
``FlowMatchEulerDiscreteScheduler``). The UNet gets the timestep σ·1000, as diffusers' flow
schedulers and SD3 do. The UNet outputs 3 channels (velocity only; the ε model keeps IF's 6).

The model folder holds one ``save_pretrained`` folder per component (``unet/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/`` — a ``FlowMatchEulerDiscreteScheduler`` with
the training shift) plus ``reschrom_model.json`` (``{"class": "FlowTextToImage", "objective":
"flow_matching"}``) and ``training_log.parquet``. There is no ``model_index.json``: diffusers
has no pixel-space flow pipeline that would load it correctly, so
``DiffusionPipeline.from_pretrained`` refuses the folder instead of misloading it.

:class:`FlowTextToImage` loads such a folder and satisfies the project's denoiser contract
(``reschrom.models.contract``): ``resolution``, ``channels``, ``schedule``, ``encode``,
``null_condition`` and ``eps(x_t, ᾱ, cond)`` in the VP convention of eq. 1, converted from the
velocity by ``reschrom.models.contract.eps_from_flow_velocity``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from reschrom.models.contract import eps_from_flow_velocity

MODEL_FILE = "reschrom_model.json"
"""The file that marks a project model folder (written instead of ``model_index.json``)."""
CLASS_NAME = "FlowTextToImage"
OBJECTIVES = ("epsilon", "v_prediction", "flow_matching")
TIMESTEP_SCALE = 1000.0
"""The UNet's timestep is σ·TIMESTEP_SCALE (diffusers' ``num_train_timesteps``)."""
COMPONENTS = ("unet", "text_encoder", "tokenizer", "scheduler")
MAX_LENGTH = 77
"""Prompt length in tokens, padded as ``IFPipeline.encode_prompt`` pads."""


# --------------------------------------------------------------------------------------
# the training objective
# --------------------------------------------------------------------------------------


def time_shift(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """σ' = s·σ / (1 + (s−1)·σ): the SD3/FLUX time shift (s > 1 moves σ towards noise)."""
    s = float(shift)
    return s * sigma / (1.0 + (s - 1.0) * sigma)


def training_sigmas(batch: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """σ of one training batch, float32 on the CPU: logit-normal sigmoid(N(0, 1)) (SD3), then
    :func:`time_shift`. Draws ``batch`` normals from ``generator``."""
    n = torch.randn(batch, generator=generator)
    return time_shift(torch.sigmoid(n), shift)


def flow_interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_flow = (1−σ)·x0 + σ·ε, with one σ per sample (B,)."""
    s = sigma.to(device=x0.device, dtype=x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return (1.0 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """u = ε − x0 = d x_flow / dσ: the velocity the network learns."""
    return noise - x0


def encode_prompts(tokenizer: Any, text_encoder: Any, prompts: Sequence[str]) -> torch.Tensor:
    """T5 hidden states of ``prompts``, tokenised as ``IFPipeline.encode_prompt`` does: padded to
    77 tokens, truncated, ``</s>`` appended, with the attention mask. Used by training (both
    objectives) and by :meth:`FlowTextToImage.encode`, so both see the same conditioning."""
    tok = tokenizer(
        list(prompts), padding="max_length", max_length=MAX_LENGTH, truncation=True,
        add_special_tokens=True, return_tensors="pt",
    )
    dev = text_encoder.device
    return text_encoder(tok.input_ids.to(dev), attention_mask=tok.attention_mask.to(dev))[0]


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


class FlowTextToImage:
    """A rectified-flow text-to-image model: UNet velocity u(x_flow, σ·1000, c), T5 text encoder,
    tokenizer and a ``FlowMatchEulerDiscreteScheduler`` carrying the time shift.

    Denoiser contract (``reschrom.models.contract``): ``resolution``, ``channels``, ``schedule``
    (``{"type": "flow_matching", "shift": s}``), ``encode(prompts)``, ``null_condition(batch)``,
    ``eps(x_t, alpha_bar, cond)``. Also ``velocity(x_flow, sigma, cond)``, ``to``,
    ``save_pretrained`` and ``from_pretrained``.
    """

    def __init__(self, unet: Any, text_encoder: Any, tokenizer: Any, scheduler: Any) -> None:
        self.unet = unet
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self._null: torch.Tensor | None = None
        self._eps = eps_from_flow_velocity(self.velocity)

    # ---- description -------------------------------------------------------------

    @property
    def shift(self) -> float:
        return float(self.scheduler.config.get("shift", 1.0))

    @property
    def schedule(self) -> dict[str, Any]:
        """The schedule in the config's syntax: ``{"type": "flow_matching", "shift": s}``."""
        return {"type": "flow_matching", "shift": self.shift}

    @property
    def resolution(self) -> int:
        size = self.unet.config.sample_size
        return int(size if isinstance(size, int) else size[0])

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> FlowTextToImage:
        """Move (and cast) the UNet and the text encoder; returns self."""
        kw = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for mod in (self.unet, self.text_encoder):
            mod.to(**kw)
        self._null = None
        return self

    # ---- the denoiser contract ---------------------------------------------------

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """T5 hidden states (B, 77, d) of ``prompts``, tokenised exactly as in training."""
        return encode_prompts(self.tokenizer, self.text_encoder, prompts)

    def null_condition(self, batch: int) -> torch.Tensor:
        """``encode([""] * batch)``: the empty-prompt embedding, computed once and expanded."""
        if self._null is None:
            self._null = self.encode([""])
        return self._null.expand(int(batch), *self._null.shape[1:])

    @torch.no_grad()
    def velocity(self, x_flow: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """u(x_flow, σ, c) ≈ ε − x0: the UNet at timestep σ·1000, its first C channels, in
        ``x_flow``'s dtype. ``sigma`` is a scalar or (B,)."""
        dt, dev = self.dtype, x_flow.device
        s = torch.as_tensor(sigma, device=dev, dtype=torch.float32).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x_flow.shape[0])
        out = self.unet(x_flow.to(dt), s * TIMESTEP_SCALE, encoder_hidden_states=cond.to(device=dev, dtype=dt)).sample
        return out[:, : x_flow.shape[1]].to(x_flow.dtype)

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """ε(x_t, ᾱ, c) in the VP convention of eq. 1, from the velocity: σ = √(1−ᾱ)/(√ᾱ+√(1−ᾱ)),
        x_flow = x_t(1−σ)/√ᾱ, ε = x_flow + (1−σ)·u (``denoisers.eps_from_flow_velocity``)."""
        return self._eps(x_t, alpha_bar, cond)

    # ---- files -------------------------------------------------------------------

    def save_pretrained(self, folder: str | os.PathLike, safe_serialization: bool = True) -> None:
        """Write each component with its own ``save_pretrained`` and ``reschrom_model.json``
        (no ``model_index.json``). Not atomic by itself: ``training.save_pipeline`` renames a
        finished temporary folder onto the target."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(root / "unet", safe_serialization=safe_serialization)
        self.text_encoder.save_pretrained(root / "text_encoder")
        self.tokenizer.save_pretrained(root / "tokenizer")
        self.scheduler.save_pretrained(root / "scheduler")
        (root / MODEL_FILE).write_text(json.dumps({"class": CLASS_NAME, "objective": "flow_matching"}, indent=2) + "\n")

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
    ) -> FlowTextToImage:
        """Load a folder written by :meth:`save_pretrained` onto ``device`` (``auto``: CUDA if
        available) in ``dtype`` (None: float32 as saved; ``auto``: float16 on CUDA)."""
        from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
        from transformers import PreTrainedTokenizerFast, T5EncoderModel

        from reschrom.io import check_model_folder
        from reschrom.models.pipelines import resolve_device, resolve_dtype

        root = Path(folder)
        check_model_folder(root, COMPONENTS)
        if not is_flow_folder(root):
            raise ValueError(f"{root} is not a {CLASS_NAME} folder ({MODEL_FILE} missing or of another class)")
        dev = resolve_device(device) if isinstance(device, str) else device
        dt = torch.float32 if dtype is None else resolve_dtype(dtype, dev)
        unet = UNet2DConditionModel.from_pretrained(root / "unet", dtype=dt)
        enc = T5EncoderModel.from_pretrained(root / "text_encoder", dtype=dt)
        tok = PreTrainedTokenizerFast.from_pretrained(root / "tokenizer")
        sched = FlowMatchEulerDiscreteScheduler.from_pretrained(root / "scheduler")
        model = cls(unet.eval(), enc.eval(), tok, sched)
        return model.to(dev)


def is_flow_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a ``reschrom_model.json`` naming :class:`FlowTextToImage`."""
    f = Path(folder) / MODEL_FILE
    if not f.is_file():
        return False
    try:
        return json.loads(f.read_text()).get("class") == CLASS_NAME
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def load_flow_t2i(
    folder: str | os.PathLike, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> FlowTextToImage:
    """:meth:`FlowTextToImage.from_pretrained`: a flow-matching model folder as a denoiser."""
    return FlowTextToImage.from_pretrained(folder, device, dtype)
