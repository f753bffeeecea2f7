"""Training the models of paper §4.2 (eq. 20–23) with a reproducible, resumable DDPM loop.

Objectives (ε-prediction unless said otherwise, mean squared error; the equations live in
:mod:`reschrom.levels`):

- ``lowres`` (eq. 20): a plain DDPM on level 1, D[x0]; target ε.
- ``residual`` (eq. 21): full resolution, input x_t at t; target ε − U D[ε].
- ``level`` m (eq. 23): input x^(m)_{τ_m} = λ^(m)_t D^m[x_t] at time τ_m (eq. 14–16); target
  2^m (D^m ε − U D^{m+1} ε), without the subtraction at the coarsest level m = M−1. The
  composite Σ_m 2^{-m} U^m[ε^(m)] telescopes back to ε (eq. 24, ``levels.compose_levels``).
  τ_m is a fractional DDPM step (``UNet2DModel`` embeds float timesteps), the same
  ``levels.level_time`` the samplers use.
- ``t2i``: a text-conditional IF-style model (``IFPipeline``); target ε on the UNet's first
  three channels; captions dropped to "" with probability ``p_uncond`` for classifier-free
  guidance (eq. 5). With ``objective: flow_matching`` in its model block, the same
  architecture learns a rectified-flow velocity instead (:mod:`reschrom.flow`): input
  x_flow = (1−σ)x0 + σε at timestep σ·1000, target u = ε − x0, σ logit-normal and time-shifted
  by the block's ``shift``; it is saved as a :class:`reschrom.flow.FlowTextToImage` folder.
  With ``precondition: flow_velocity`` the ε model's UNet
  (:class:`reschrom.precondition.PreconditionedUNet2DConditionModel`) regresses the same
  velocity u = ε − x0 from the VP input x_t of eq. 1 at the fractional DDPM step of a
  logit-normal σ, and answers ε = (x_t + √ᾱ·u)/(√ᾱ + √(1−ᾱ)): still an ``IFPipeline``.
  ``clip_sample`` in the block sets the saved scheduler's x̂0 clipping (default true).

Optional min-SNR-γ weighting (``snr_gamma``) reweights time steps without changing the
minimiser (plain ε objectives only; the flow objective and the preconditioned ε model ignore it). The loop: AdamW, EMA (the saved weights are the EMA weights), warm-up + constant/cosine LR,
gradient clipping, a NaN/inf guard naming the step, checkpoints every N steps (safetensors
weights and EMA, optimizer and RNG state loaded with ``torch.load(weights_only=True)``) and
resume from the latest, tqdm progress. Every random draw comes from one seeded CPU
``torch.Generator``, so a run is bitwise reproducible on CPU and a resumed run equals an
uninterrupted one. On CUDA: bf16 autocast, channels_last and ``torch.compile`` by config.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from reschrom import flow
from reschrom.io import write_parquet
from reschrom.levels import forward_diffuse, level_input, level_target, level_time, residual_target
from reschrom.schedules import DiscreteSchedule

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
        """``flow_velocity`` (:mod:`reschrom.precondition`) or None: the model block's ``precondition``."""
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


def _cfg(train_cfg: Mapping[str, Any]) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------
# the model bundle: what is trained, how it is called, how it is saved
# --------------------------------------------------------------------------------------


class _Bundle:
    """The trainable modules of one job, their forward call and their pipeline folder."""

    def __init__(self, spec: TrainSpec, sample_size: int, captions: Sequence[str] | None, device: torch.device):
        from reschrom import models

        self.spec = spec
        self.device = device
        self.scheduler = models.build_noise_scheduler(spec.schedule_name, spec.schedule_spec)
        torch.manual_seed(spec.seed)  # module initialisation draws from the global generator
        if spec.kind == "t2i":
            if captions is None:
                raise ValueError("t2i training needs captions (captions.parquet of the split)")
            self.tokenizer = models.build_word_tokenizer(list(captions) + [""])
            if spec.flow:
                self.pipe = models.build_flow_t2i(self.tokenizer, spec.model_cfg, sample_size)
            else:
                self.scheduler.register_to_config(prediction_type=spec.objective,
                                                  clip_sample=bool(spec.model_cfg.get("clip_sample", True)))
                self.pipe = models.build_t2i_pipeline(self.tokenizer, spec.model_cfg, self.scheduler, sample_size)
            self.modules = {"unet": self.pipe.unet, "text_encoder": self.pipe.text_encoder}
        else:
            unet = models.build_unet(spec.model_cfg, sample_size)
            self.pipe = models.build_ddpm_pipeline(unet, self.scheduler)
            self.modules = {"unet": unet}
        for mod in self.modules.values():
            mod.to(device)
            mod.train()
        self.named = [(f"{k}.{n}", p) for k, mod in self.modules.items() for n, p in mod.named_parameters()]
        self.params = [p for _, p in self.named]

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Token ids padded to 77 exactly as ``IFPipeline.encode_prompt`` does, and the T5 states."""
        return flow.encode_prompts(self.tokenizer, self.modules["text_encoder"], captions)


def _digest(x: torch.Tensor, captions: Sequence[str] | None) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(x.shape)).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    if captions is not None:
        h.update("\n".join(captions).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


def _ckpt_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / "state.json").is_file())


def save_checkpoint(root: Path, step: int, bundle: _Bundle, ema: list[torch.Tensor], opt: torch.optim.Optimizer,
                    gen: torch.Generator, log_rows: list[dict], fingerprint: str, keep: int) -> Path:
    """Write ``root/step_XXXXXXXX/`` atomically (a temporary folder renamed at the end)."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({n: p.detach().cpu().contiguous() for n, p in bundle.named}, str(tmp / "model.safetensors"))
    save_file({n: e.detach().cpu().contiguous() for (n, _), e in zip(bundle.named, ema)}, str(tmp / "ema.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    rng = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    pd.DataFrame(log_rows).to_parquet(tmp / "log.parquet")
    (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in _ckpt_dirs(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest_checkpoint(root: Path, fingerprint: str) -> Path | None:
    """The newest complete checkpoint of this exact model and data, or None.

    Checkpoints of another configuration (different fingerprint) are reported and ignored.
    """
    for d in reversed(_ckpt_dirs(root)):
        try:
            state = json.loads((d / "state.json").read_text())
        except (OSError, json.JSONDecodeError):
            print(f"checkpoint {d}: unreadable state.json, ignored", file=sys.stderr)
            continue
        if state.get("fingerprint") != fingerprint:
            print(f"checkpoint {d}: made with another configuration, ignored", file=sys.stderr)
            continue
        return d
    return None


def _restore(d: Path, bundle: _Bundle, ema: list[torch.Tensor], opt: torch.optim.Optimizer, gen: torch.Generator) -> tuple[int, list[dict]]:
    from safetensors.torch import load_file

    try:
        weights = load_file(str(d / "model.safetensors"))
        ema_w = load_file(str(d / "ema.safetensors"))
        opt_state = torch.load(d / "optimizer.pt", weights_only=True, map_location="cpu")
        rng = torch.load(d / "rng.pt", weights_only=True, map_location="cpu")
        log = pd.read_parquet(d / "log.parquet").to_dict("records")
        step = int(json.loads((d / "state.json").read_text())["step"])
    except Exception as e:
        raise RuntimeError(f"corrupt checkpoint {d}: {str(e).splitlines()[0]}; delete it to restart") from None
    with torch.no_grad():
        for (n, p), e in zip(bundle.named, ema):
            p.copy_(weights[n].to(p.device))
            e.copy_(ema_w[n].to(e.device))
    opt.load_state_dict(opt_state)
    gen.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return step, log


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the step."""


def train(
    spec: TrainSpec,
    images: torch.Tensor,
    out_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    captions: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    stop_after: int | None = None,
    threads: int | None = None,
    name: str = "model",
) -> pd.DataFrame | None:
    """Train one model on ``images`` (N, 3, H, W) in [-1, 1] and save it as a pipeline folder
    (a ``FlowTextToImage`` folder for ``objective: flow_matching``).

    Resumes from the newest matching checkpoint in ``checkpoint_dir``. ``stop_after`` ends
    the run after that many steps *of this call* with a checkpoint and no saved model (it
    simulates an interruption) and returns None. Otherwise writes ``out_dir`` (a diffusers
    pipeline with EMA weights and ``training_log.parquet``) and returns the log.
    """
    from tqdm.auto import tqdm

    from reschrom import precondition
    from reschrom.pipelines import resolve_device

    cfg = _cfg(spec.train_cfg)
    dev = resolve_device(str(device)) if isinstance(device, str) else device
    if threads:
        torch.set_num_threads(int(threads))
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"training data: expected (N, 3, H, W) images, got {tuple(images.shape)}")
    n, _, h, w = images.shape
    if h != w or 2 ** round(math.log2(h)) != h:
        raise ValueError(f"training data: resolution {h}×{w} is not a square power of two")
    bs = int(cfg["batch_size"])
    if n < bs:
        raise ValueError(f"training.batch_size: the dataset has {n} images, fewer than the batch size {bs}")
    if not torch.isfinite(images).all():
        raise ValueError("training data: images contain NaN or inf")
    if captions is not None and len(captions) != n:
        raise ValueError(f"training data: {len(captions)} captions for {n} images")
    k = spec.kernel
    if spec.kind == "level":
        if h % (k ** (spec.num_levels - 1)):
            raise ValueError(f"training.num_levels: {spec.num_levels} levels need a resolution divisible by {k ** (spec.num_levels - 1)}, got {h}")
        sample_size = h // k**spec.level
    else:
        sample_size = h

    bundle = _Bundle(spec, sample_size, captions, dev)
    use_cuda = dev.type == "cuda"
    if use_cuda and cfg["channels_last"]:
        bundle.modules["unet"].to(memory_format=torch.channels_last)
    # a preconditioned UNet is trained through its raw output F (the velocity), not its ε
    unet_call = bundle.modules["unet"].velocity if spec.precondition else bundle.modules["unet"]
    if use_cuda and cfg["compile"]:
        unet_call = torch.compile(unet_call)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda and cfg["mixed_precision"] == "bf16")

    opt_kwargs: dict[str, Any] = {
        "lr": learning_rate(1, cfg),
        "betas": (float(cfg["adam_beta1"]), float(cfg["adam_beta2"])),
        "weight_decay": float(cfg["weight_decay"]),
    }
    try:
        opt = torch.optim.AdamW(bundle.params, fused=True, **opt_kwargs)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(bundle.params, foreach=True, **opt_kwargs)
    ema = [p.detach().clone() for p in bundle.params]
    gen = torch.Generator(device="cpu").manual_seed(int(spec.seed) + 1_000_003)

    data = images.to(dev, torch.float32)
    caps = list(captions) if captions is not None else None
    alphas = bundle.scheduler.alphas_cumprod.to(torch.float32)
    ab_table = bundle.modules["unet"].alphas_cumprod("cpu") if spec.precondition else None
    T = len(alphas)
    schedule = DiscreteSchedule(alphas.double().numpy(), name=spec.schedule_name) if spec.kind == "level" else None
    fp = spec.fingerprint(_digest(images, caps))
    ckroot = Path(checkpoint_dir)
    start, log_rows = 0, []
    latest = load_latest_checkpoint(ckroot, fp)
    if latest is not None:
        start, log_rows = _restore(latest, bundle, ema, opt, gen)
        print(f"{name}: resumed from {latest} (step {start})", file=sys.stderr)
    total = int(cfg["steps"])
    end = total if stop_after is None else min(total, start + int(stop_after))

    bar = tqdm(total=total, initial=start, desc=name, file=sys.stderr, mininterval=2.0,
               disable=not cfg.get("progress", True), unit="step")
    p_uncond = float(cfg["p_uncond"])
    snr_gamma = float(cfg["snr_gamma"] or 0.0)
    for step in range(start + 1, end + 1):
        t0 = time.perf_counter()
        idx = torch.randint(n, (bs,), generator=gen)
        noise = torch.randn((bs, 3, h, w), generator=gen).to(dev)
        if spec.flow or spec.precondition:  # rectified-flow noise levels: logit-normal σ
            sigma = flow.training_sigmas(bs, spec.shift, gen)
        else:  # eq. 1 at a DDPM step
            t = torch.randint(0, T, (bs,), generator=gen)
        drop = torch.rand(bs, generator=gen) < p_uncond
        x0 = data[idx.to(dev)]
        if spec.flow:
            ab = None
            x_t = flow.flow_interpolate(x0, noise, sigma)
            timestep = (sigma * flow.TIMESTEP_SCALE).to(dev)
            target = flow.velocity_target(x0, noise)
        elif spec.precondition:  # eq. 1 at the fractional DDPM step of σ; the UNet regresses u = ε − x0
            timestep = precondition.timestep_of_sigma(ab_table, sigma)
            x_t = forward_diffuse(x0, noise, precondition.alpha_bar_at(ab_table, timestep).float().to(dev))
            timestep = timestep.to(dev)
            ab = None
            target = flow.velocity_target(x0, noise)
        else:
            ab = alphas[t]
            x_t = forward_diffuse(x0, noise, ab.to(dev))
            timestep = t.to(dev)
            target = v_target(x0, noise, ab.to(dev)) if spec.objective == "v_prediction" else noise
        with autocast:
            if spec.kind == "t2i":
                texts = ["" if d else caps[i] for i, d in zip(idx.tolist(), drop.tolist())]
                cond = bundle.encode(texts)
                out = unet_call(x_t, timestep, encoder_hidden_states=cond)
                pred = (out if spec.precondition else out.sample)[:, :3]
            elif spec.kind == "level":
                inp = level_input(x_t, ab, spec.level, k)
                tau = level_time(schedule, None, t, spec.level, k).to(dev)
                pred = unet_call(inp, tau).sample
                target = level_target(noise, spec.level, spec.num_levels, k)
            else:
                pred = unet_call(x_t, timestep).sample
                if spec.kind == "residual":
                    target = residual_target(noise, k)
        if snr_gamma and ab is not None:
            loss = (min_snr_weights(ab, snr_gamma, spec.objective).to(dev) * (pred.float() - target.float()).pow(2).mean(dim=(1, 2, 3))).mean()
        else:
            loss = F.mse_loss(pred.float(), target.float())
        if not torch.isfinite(loss):
            bar.close()
            raise NonFiniteLossError(f"{name}: loss is {loss.item()} at step {step}; lower training.lr or check the data")
        loss.backward()
        if cfg["max_grad_norm"]:
            torch.nn.utils.clip_grad_norm_(bundle.params, float(cfg["max_grad_norm"]))
        lr = learning_rate(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)
        decay = min(float(cfg["ema_decay"]), (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in bundle.params], 1.0 - decay)
        lv = float(loss.detach())
        dt = time.perf_counter() - t0
        if step % int(cfg["log_every"]) == 0 or step == total:
            log_rows.append({"step": step, "loss": lv, "lr": lr, "images_per_s": bs / max(dt, 1e-9)})
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{lv:.4f}", refresh=False)
        if step % int(cfg["checkpoint_every"]) == 0 or (stop_after is not None and step == end):
            save_checkpoint(ckroot, step, bundle, ema, opt, gen, log_rows, fp, int(cfg["keep_checkpoints"]))
    bar.close()
    if end < total:
        return None

    with torch.no_grad():
        for p, e in zip(bundle.params, ema):
            p.copy_(e)
    for mod in bundle.modules.values():
        mod.eval()
        mod.to(memory_format=torch.contiguous_format)
    log = pd.DataFrame(log_rows, columns=["step", "loss", "lr", "images_per_s"])
    save_pipeline(bundle.pipe, out_dir, log)
    return log


def save_pipeline(pipe: Any, out_dir: str | os.PathLike, log: pd.DataFrame | None = None) -> None:
    """``save_pretrained`` into a temporary sibling folder, then rename onto ``out_dir``."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.to("cpu")
    pipe.save_pretrained(tmp, safe_serialization=True)
    if log is not None:
        write_parquet(log, tmp / "training_log.parquet")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


# --------------------------------------------------------------------------------------
# the workflow entry point
# --------------------------------------------------------------------------------------


def train_from_files(
    kind: str,
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    model_cfg: Mapping[str, Any],
    train_cfg: Mapping[str, Any],
    schedule_name: str,
    schedule_spec: Mapping[str, Any],
    captions: str | os.PathLike | None = None,
    level: int = 0,
    num_levels: int = 2,
    kernel: int = 2,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    stop_after: int | None = None,
) -> pd.DataFrame | None:
    """Load a stored level (and captions) and :func:`train` one model; what the rules call."""
    from reschrom.data import load_captions, load_level

    images = load_level(data)
    caps = None
    if captions is not None:
        df = load_captions(captions).sort_values("index")
        caps = [str(c) for c in df["caption"].fillna("")]
    spec = TrainSpec(kind, dict(model_cfg), dict(train_cfg), schedule_name, dict(schedule_spec),
                     int(level), int(num_levels), int(kernel), int(seed))
    name = f"{kind}{level}" if kind == "level" else kind
    return train(spec, images, out_dir, checkpoint_dir, caps, device, stop_after, threads, name)


# --------------------------------------------------------------------------------------
# does a trained model follow its captions? (shapes dataset only)
# --------------------------------------------------------------------------------------


def sample_images(
    folder: str | os.PathLike,
    prompts: Sequence[str] | None = None,
    n: int = 16,
    steps: int = 50,
    guidance_scale: float = 4.0,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    clip_sample: bool | None = None,
) -> torch.Tensor:
    """Samples in [-1, 1] of a saved model folder with a DDIM scheduler of ``steps`` steps
    (x̂0 clipping as the folder's scheduler is saved, or forced on/off by ``clip_sample``).

    Unconditional (``DDPMPipeline``) folders give ``n`` samples; text-conditional
    (``IFPipeline``) folders give one sample per prompt, with classifier-free guidance;
    rectified-flow folders (``FlowTextToImage``) too, through the project's DDIM (eq. 4) with
    CFG (eq. 5) over the model's own schedule (:func:`reschrom.denoisers.sample_cfg`).
    """
    from diffusers import DDIMScheduler

    from reschrom.models import load_pipeline

    if os.path.isfile(os.path.join(os.fspath(folder), "reschrom_model.json")):
        return _sample_flow(folder, prompts, steps, guidance_scale, seed, device, batch_size)
    pipe = load_pipeline(folder, device)
    sched_cfg = dict(pipe.scheduler.config)
    pipe.scheduler = DDIMScheduler.from_config(sched_cfg)
    pipe.scheduler.register_to_config(variance_type=sched_cfg.get("variance_type", "fixed_small"))
    if clip_sample is not None:
        pipe.scheduler.register_to_config(clip_sample=bool(clip_sample))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    outs = []
    if prompts is None:
        done = 0
        while done < n:
            b = min(batch_size, n - done)
            x = pipe(batch_size=b, num_inference_steps=steps, generator=gen, output_type="np").images
            outs.append(torch.from_numpy(x).permute(0, 3, 1, 2) * 2 - 1)
            done += b
    else:
        ps = list(prompts)
        for i in range(0, len(ps), batch_size):
            x = pipe(ps[i : i + batch_size], num_inference_steps=steps, guidance_scale=guidance_scale,
                     generator=gen, output_type="pt", clean_caption=False).images
            outs.append(x.float().cpu())
    return torch.cat(outs).clamp(-1, 1)


def _sample_flow(folder: str | os.PathLike, prompts: Sequence[str] | None, steps: int, guidance_scale: float,
                 seed: int, device: str, batch_size: int) -> torch.Tensor:
    """:func:`sample_images` for a rectified-flow text-to-image folder (one sample per prompt)."""
    from reschrom.denoisers import ModuleModel, initial_noise, sample_cfg
    from reschrom.flow import load_flow_t2i

    if prompts is None:
        raise ValueError(f"{folder}: a text-to-image model samples one image per prompt; give prompts")
    model = ModuleModel.from_object("t2i", load_flow_t2i(folder, device=device), device=device)
    ps, outs = list(prompts), []
    for i in range(0, len(ps), batch_size):
        chunk = ps[i : i + batch_size]
        x_T = initial_noise(model, len(chunk), int(seed) + i)
        outs.append(sample_cfg(model, [model.encode(chunk)], model.null_condition(len(chunk)),
                               guidance_scale=guidance_scale, num_inference_steps=steps, x_T=x_T).float().cpu())
    return torch.cat(outs).clamp(-1, 1)


def caption_accuracy(images: torch.Tensor, prompts: Sequence[str]) -> pd.DataFrame:
    """Per prompt: the (colour, shape) the detector sees against the caption's words."""
    from reschrom.data import caption_factors, classify_shapes

    colours, shapes = classify_shapes(images)
    rows = []
    for p, c, s in zip(prompts, colours, shapes):
        wc, ws = caption_factors(p)
        rows.append({"prompt": p, "colour": wc, "shape": ws, "detected_colour": c, "detected_shape": s,
                     "colour_ok": c == wc, "shape_ok": s == ws})
    return pd.DataFrame(rows)
