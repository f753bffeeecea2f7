"""Training throughput: the project's loop against diffusers' reference loop, in one process.

The reference is written the way diffusers' ``examples/unconditional_image_generation/
train_unconditional.py`` does it: ``Accelerator``, ``DDPMScheduler.add_noise``, AdamW,
``get_scheduler("cosine")``, ``accelerator.clip_grad_norm_``, ``EMAModel.step`` after every
optimizer step. Both loops train the same ``UNet2DModel`` (the default config's ``lowres``
block) with the same batch, dtype (float32 on CPU, bf16 autocast on CUDA for both) and
optimizer hyperparameters on in-memory data; the first steps of each are warm-up and not
timed. Rounds alternate between the two to share machine load fairly; the ratio of the
median per-step images/s is printed (> 1: the project is faster).

    .venv/bin/python benchmarks/train_throughput.py [--steps 30] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from reschrom.models.builders import build_unet  # noqa: E402
from reschrom.training.loop import train  # noqa: E402
from reschrom.training.spec import TrainSpec  # noqa: E402

WARMUP = 5


def reference_loop(model_cfg: dict, images: torch.Tensor, steps: int, batch: int, lr: float, device: torch.device) -> list[float]:
    """Per-step images/s of a loop written like diffusers' train_unconditional.py."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    model = build_unet(model_cfg, images.shape[-1])
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    lr_scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=50, num_training_steps=steps)
    accelerator = Accelerator(mixed_precision="bf16" if device.type == "cuda" else "no", cpu=device.type == "cpu")
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    ema_model = EMAModel(model.parameters(), decay=0.995, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4,
                         model_cls=type(model), model_config=model.config)
    ema_model.to(accelerator.device)
    data = images.to(accelerator.device)
    g = torch.Generator().manual_seed(0)
    rates = []
    model.train()
    for step in range(steps):
        t0 = time.perf_counter()
        idx = torch.randint(len(data), (batch,), generator=g)
        clean_images = data[idx.to(accelerator.device)]
        noise = torch.randn(clean_images.shape, device=clean_images.device)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), device=clean_images.device).long()
        noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)
        with accelerator.accumulate(model):
            model_output = model(noisy_images, timesteps).sample
            loss = F.mse_loss(model_output.float(), noise.float())
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            ema_model.step(model.parameters())
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= WARMUP:
            rates.append(batch / (time.perf_counter() - t0))
    return rates


def project_loop(model_cfg: dict, images: torch.Tensor, steps: int, batch: int, lr: float, device: torch.device) -> list[float]:
    """Per-step images/s of reschrom.training.loop (the ``lowres`` objective), from its log."""
    cfg = {"steps": steps, "batch_size": batch, "lr": lr, "lr_warmup_steps": 50, "checkpoint_every": 10**9,
           "progress": False, "ema_decay": 0.995}
    spec = TrainSpec("lowres", model_cfg, cfg, "linear", {"type": "ddpm", "beta_schedule": "linear"}, seed=0)
    with tempfile.TemporaryDirectory() as d:
        log = train(spec, images, Path(d) / "out", Path(d) / "ck", None, device)
    return log["images_per_s"].tolist()[WARMUP:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    model_cfg = {k: v for k, v in cfg["models"]["lowres"].items() if k != "train"}
    res = cfg["data"]["resolution"] // 2
    images = torch.rand(512, 3, res, res, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref, ours = [], []
    for r in range(args.rounds):
        ref += reference_loop(model_cfg, images, args.steps, args.batch, 1e-3, device)
        ours += project_loop(model_cfg, images, args.steps, args.batch, 1e-3, device)
        print(f"round {r + 1}: reference {statistics.median(ref):.1f} img/s, project {statistics.median(ours):.1f} img/s",
              flush=True)
    mr, mo = statistics.median(ref), statistics.median(ours)
    print(f"UNet {model_cfg['block_out_channels']} at {res}×{res}, batch {args.batch}, {args.threads} thread(s), {device}")
    print(f"reference (diffusers train_unconditional style): {mr:.1f} images/s")
    print(f"project (reschrom.training.loop):               {mo:.1f} images/s")
    print(f"ratio project/reference: {mo / mr:.3f}")


if __name__ == "__main__":
    main()
