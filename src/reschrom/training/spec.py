"""The objectives of paper §4.2 (eq. 20–23) and the configuration of one training job
(:class:`TrainSpec`, the learning-rate schedule).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from reschrom.models import flow

KINDS = ("lowres", "residual", "level", "t2i")
OBJECTIVES = flow.OBJECTIVES
"""``objective`` of a model block: ε-prediction (all kinds), v-prediction or rectified flow
(``t2i`` only)."""


def v_target(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The v-prediction target v = √ᾱ·ε − √(1−ᾱ)·x0 (Salimans & Ho 2022) at x_t of eq. 1; the
    model's ε follows as ε = √ᾱ·v + √(1−ᾱ)·x_t, so E[v | x_t] gives E[ε | x_t]."""
    ab = alpha_bar.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return ab.sqrt() * noise - (1.0 - ab).sqrt() * x0


def min_snr_weights(alpha_bar: torch.Tensor, gamma: float, objective: str = "epsilon") -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023): min(SNR, γ)/SNR for ε-prediction,
    min(SNR, γ)/(SNR + 1) for v-prediction (the same weight on the x0 error).

    A per-sample positive weight: the minimiser of the loss is still E[ε | x_t] at every t,
    so eq. 20–23 keep their meaning; training converges faster on few steps.
    """
    snr = alpha_bar.double() / (1.0 - alpha_bar.double())
    return (snr.clamp(max=gamma) / (snr + 1.0 if objective == "v_prediction" else snr)).float()


# --------------------------------------------------------------------------------------
# configuration of one training job
# --------------------------------------------------------------------------------------


@dataclass
class TrainSpec:
    """What one job trains: its kind, level, and the config blocks that define the model."""

    kind: str
    model_cfg: Mapping[str, Any]
    train_cfg: Mapping[str, Any]
    schedule_name: str
    schedule_spec: Mapping[str, Any]
    level: int = 0
    num_levels: int = 2
    kernel: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"training kind {self.kind!r} is unknown; allowed: {', '.join(KINDS)}")
        if self.kind == "level" and not 0 <= self.level < self.num_levels:
            raise ValueError(f"training.num_levels: level {self.level} is outside 0 … {self.num_levels - 1}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"models.{self.kind}.objective {self.objective!r} is unknown; allowed: {', '.join(OBJECTIVES)}")
        if self.objective != "epsilon" and self.kind != "t2i":
            raise ValueError(f"models.{self.kind}.objective: {self.objective} is implemented for t2i only")
        if self.precondition is not None and (self.kind != "t2i" or self.objective != "epsilon"):
            raise ValueError(f"models.{self.kind}.precondition: only a t2i model with objective epsilon is preconditioned")
        if not self.shift > 0:
            raise ValueError(f"models.{self.kind}.shift must be positive, got {self.shift}")

    @property
    def objective(self) -> str:
        """``epsilon`` (default) or ``flow_matching``: the model block's ``objective``."""
        return str(self.model_cfg.get("objective") or "epsilon")

    @property
    def precondition(self) -> str | None:
        """``flow_velocity`` (:mod:`reschrom.models.precondition`) or None: the model block's ``precondition``."""
        v = self.model_cfg.get("precondition")
        return None if v is None else str(v)

    @property
    def flow(self) -> bool:
        return self.objective == "flow_matching"

    @property
    def shift(self) -> float:
        """The flow time shift s (σ' = sσ/(1+(s−1)σ)) of the model block, default 1."""
        v = self.model_cfg.get("shift")
        return 1.0 if v is None else float(v)

    def fingerprint(self, data_digest: str) -> str:
        blob = json.dumps(
            {
                "kind": self.kind,
                "model": self.model_cfg,
                "train": {k: v for k, v in self.train_cfg.items() if k not in _RUNTIME_KEYS},
                "schedule": self.schedule_spec,
                "level": self.level,
                "num_levels": self.num_levels,
                "kernel": self.kernel,
                "seed": self.seed,
                "data": data_digest,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_RUNTIME_KEYS = ("checkpoint_every", "keep_checkpoints", "log_every", "compile", "progress")
"""Training keys that do not change the trained weights (excluded from the fingerprint)."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 1000,
    "batch_size": 32,
    "lr": 1e-3,
    "lr_warmup_steps": 50,
    "lr_schedule": "cosine",
    "weight_decay": 0.0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.99,
    "max_grad_norm": 1.0,
    "ema_decay": 0.995,
    "p_uncond": 0.1,
    "snr_gamma": None,
    "checkpoint_every": 200,
    "keep_checkpoints": 2,
    "log_every": 1,
    "mixed_precision": "bf16",
    "channels_last": True,
    "compile": False,
}


def train_settings(train_cfg: Mapping[str, Any]) -> dict[str, Any]:
    c = dict(TRAIN_DEFAULTS)
    c.update({k: v for k, v in train_cfg.items() if v is not None})
    return c


def learning_rate(step: int, cfg: Mapping[str, Any]) -> float:
    """Linear warm-up to ``lr`` over ``lr_warmup_steps``, then constant or cosine to lr/10."""
    lr, warm, total = float(cfg["lr"]), int(cfg["lr_warmup_steps"]), int(cfg["steps"])
    if warm > 0 and step <= warm:
        return lr * step / warm
    if cfg["lr_schedule"] == "cosine" and total > warm:
        p = (step - warm) / max(total - warm, 1)
        return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(p, 1.0))))
    return lr
