"""Training the models of paper §4.2 (eq. 20–23) with a reproducible, resumable DDPM loop.

Objectives (ε-prediction unless said otherwise, mean squared error; the equations live in
:mod:`reschrom.theory.levels`):

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
  architecture learns a rectified-flow velocity instead (:mod:`reschrom.models.flow`): input
  x_flow = (1−σ)x0 + σε at timestep σ·1000, target u = ε − x0, σ logit-normal and time-shifted
  by the block's ``shift``; it is saved as a :class:`reschrom.models.flow.FlowTextToImage` folder.
  With ``precondition: flow_velocity`` the ε model's UNet
  (:class:`reschrom.models.precondition.PreconditionedUNet2DConditionModel`) regresses the same
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

import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from reschrom.io import write_parquet
from reschrom.models import flow
from reschrom.theory.levels import forward_diffuse, level_input, level_target, level_time, residual_target
from reschrom.theory.schedules import DiscreteSchedule
from reschrom.training.checkpoints import (
    ModelBundle,
    digest_data,
    load_latest_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from reschrom.training.spec import TrainSpec, learning_rate, min_snr_weights, train_settings, v_target

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

    from reschrom.models import precondition
    from reschrom.models.pipelines import resolve_device

    cfg = train_settings(spec.train_cfg)
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

    bundle = ModelBundle(spec, sample_size, captions, dev)
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
    fp = spec.fingerprint(digest_data(images, caps))
    ckroot = Path(checkpoint_dir)
    start, log_rows = 0, []
    latest = load_latest_checkpoint(ckroot, fp)
    if latest is not None:
        start, log_rows = restore_checkpoint(latest, bundle, ema, opt, gen)
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
    from reschrom.data.dataset import load_captions, load_level

    images = load_level(data)
    caps = None
    if captions is not None:
        df = load_captions(captions).sort_values("index")
        caps = [str(c) for c in df["caption"].fillna("")]
    spec = TrainSpec(kind, dict(model_cfg), dict(train_cfg), schedule_name, dict(schedule_spec),
                     int(level), int(num_levels), int(kernel), int(seed))
    name = f"{kind}{level}" if kind == "level" else kind
    return train(spec, images, out_dir, checkpoint_dir, caps, device, stop_after, threads, name)
