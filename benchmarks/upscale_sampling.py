"""Cost of cascaded upscaling (§4.2, eq. 22, 24) against its parts, in one process.

Random-init UNets of the default config's sizes (``config.yaml``: models.lowres at level 1,
models.residual and models.level at full resolution, training.num_levels levels):

  * per step: one evaluation of the composite ε_high (eq. 22) against one evaluation of the
    low-res UNet, of the residual UNet and of their sum; the M-level composite (eq. 24) against
    the sum of its level UNets; and the cost of the multi-resolution threshold (Algorithm 1);
  * per variant: wall time of sampling ``--images`` images in ``--steps`` DDIM steps, as a
    ratio to the low-res model alone (``nearest``).

Medians of ``--repeats`` interleaved runs. Prints seconds and ratios.

Run: .venv/bin/python benchmarks/upscale_sampling.py [--images 16] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

from reschrom.models.builders import build_unet
from reschrom.sampling import samplers as sampling
from reschrom.sampling import upscale

ROOT = Path(__file__).resolve().parents[1]


def _median_time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _model(cfg: dict, size: int, seed: int, sched_cfg: dict) -> upscale.LevelModel:
    torch.manual_seed(seed)
    unet = build_unet(cfg, size).eval()
    return upscale.LevelModel(sampling.unet_predictor(unet), sampling.schedule_of(sched_cfg), sched_cfg, size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import DDPMScheduler

    cfg = yaml.safe_load(Path(args.config).read_text())
    R = int(cfg["data"]["resolution"])
    M = int(cfg["training"]["num_levels"])
    sched_cfg = dict(DDPMScheduler(num_train_timesteps=1000).config)
    mcfg = cfg["models"]
    models = {
        "lowres": _model(mcfg["lowres"], R // 2, 0, sched_cfg),
        "residual": _model(mcfg["residual"], R, 1, sched_cfg),
        "levels": [_model(mcfg.get(f"level_{m}", mcfg["level"]), R >> m, 2 + m, sched_cfg) for m in range(M)],
    }
    B = args.images
    x = sampling.initial_noise((B, 3, R, R), 0)
    x_low = sampling.initial_noise((B, 3, R // 2, R // 2), 1)
    x_levels = [sampling.initial_noise((B, 3, R >> m, R >> m), 2 + m) for m in range(M)]
    t = torch.full((B,), 500.0)
    full = upscale.variant_setup("full", models)[0]
    multi = upscale.variant_setup("multilevel", models)[0]
    eps0 = models["residual"].predictor(x, t)

    print(f"# R={R}, M={M}, batch {B}, threads {args.threads}, models: lowres {mcfg['lowres']['block_out_channels']}, "
          f"residual {mcfg['residual']['block_out_channels']}, level {mcfg['level']['block_out_channels']}")
    step_fns = {
        "lowres UNet": lambda: models["lowres"].predictor(x_low, t),
        "residual UNet": lambda: models["residual"].predictor(x, t),
        "composite eq. 22": lambda: full(x, t),
        "sum of level UNets": lambda: [lv.predictor(xm, t) for lv, xm in zip(models["levels"], x_levels)],
        "composite eq. 24": lambda: multi(x, t),
        "multires threshold": lambda: sampling.threshold_eps(x, eps0, 0.5, "multires"),
    }
    with torch.no_grad():
        for fn in step_fns.values():  # warm-up
            fn()
        per_step = {k: _median_time(fn, args.repeats) for k, fn in step_fns.items()}
    parts = per_step["lowres UNet"] + per_step["residual UNet"]
    print("\n## one evaluation (seconds, ratio)")
    for k, v in per_step.items():
        print(f"{k:22s} {v:8.4f} s")
    print(f"composite eq. 22 / (lowres + residual UNet) = {per_step['composite eq. 22'] / parts:.3f}")
    print(f"composite eq. 22 / residual UNet            = {per_step['composite eq. 22'] / per_step['residual UNet']:.3f}")
    print(f"composite eq. 24 / sum of its level UNets   = {per_step['composite eq. 24'] / per_step['sum of level UNets']:.3f}")
    print(f"multires threshold / composite eq. 22       = {per_step['multires threshold'] / per_step['composite eq. 22']:.3f}")

    print(f"\n## sampling {B} images, {args.steps} DDIM steps, multires threshold (median of {args.repeats})")
    times: dict[str, list[float]] = {v: [] for v in upscale.VARIANTS}
    times["full, no threshold"] = []
    for _ in range(args.repeats):  # interleaved
        for v in upscale.VARIANTS:
            t0 = time.perf_counter()
            upscale.sample_variant(v, models, B, args.steps, 0, B, "ddim", "multires", progress=False)
            times[v].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        upscale.sample_variant("full", models, B, args.steps, 0, B, "ddim", "none", progress=False)
        times["full, no threshold"].append(time.perf_counter() - t0)
    base = statistics.median(times["nearest"])
    for v, ts in times.items():
        med = statistics.median(ts)
        print(f"{v:24s} {med:8.3f} s   ratio to nearest (low-res model alone) {med / base:6.2f}")


if __name__ == "__main__":
    main()
