"""Overhead of the guidance probe (§4.1) and its Parquet dump against the bare pipeline call.

One process, one pipeline, the same prompt and seed: wall time of
  * the pipeline call as is (baseline),
  * the same call under a :class:`reschrom.measure.probe.GuidanceProbe` plus building the dump table
    and writing it with ``reschrom.io.write_parquet`` (goal: ratio ≤ 1.05 on CPU),
median of ``--repeats`` runs each, interleaved. Also checks that the images are bitwise equal.

Run: .venv/bin/python benchmarks/probe_overhead.py [--model PATH] [--steps 50] [--images 4]
(default: results/models/shapes/toy if it exists, else a random-weight tiny IF pipeline at
32×32 built offline; ``--model oracle`` uses the analytic oracle at 64×64).

On a GPU: ``--device cuda --dtype float16`` (times taken after ``torch.cuda.synchronize``; the
images compared by their largest difference, since CUDA kernels need not be bitwise
deterministic). ``--model sd15-random`` is a random-initialised ``UNet2DConditionModel`` of
Stable Diffusion 1.5's size (block widths 320/640/1280/1280, 2 layers per block, cross-attention
width 768: 860 M parameters) in a ``StableDiffusionPipeline`` with a tiny CLIP text encoder and a
tiny VAE, on 64×64 latents (SD 1.5 at 512 px), output_type ``latent``: the denoising loop alone.

``--model module`` measures a denoiser model (the `kind: module` path, sampled by the project's
own DDIM with CFG): ``reschrom.measure.measurement.measure_guidance`` plus the Parquet dump
against ``reschrom.sampling.cfg.sample_cfg`` alone on the same model, prompt and seed. The model is
the trained rectified-flow toy (results/models/shapes/toy_flow) wrapped as a module model, or
with ``--module-path DIR --factory mod:fn`` any module model.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reschrom.io import write_parquet
from reschrom.measure.probe import GuidanceProbe, guidance_frame
from reschrom.models.adapters import PipelineAdapter


def _sd15_random():
    """A StableDiffusionPipeline whose UNet has SD 1.5's architecture and random weights."""
    from diffusers import UNet2DConditionModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
    from builders import build_tiny_sd_pipeline

    pipe = build_tiny_sd_pipeline(resolution=128, seed=0, text_dim=768)
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    ).eval()
    n = sum(p.numel() for p in pipe.unet.parameters())
    return pipe, f"random UNet2DConditionModel of SD 1.5 size ({n / 1e6:.0f} M parameters), 64×64 latents"


def _pipeline(model: str | None):
    if model == "oracle":
        from reschrom.models.oracle import build_oracle_pipeline

        return build_oracle_pipeline(64), "oracle 64×64"
    if model == "sd15-random":
        return _sd15_random()
    path = model or "results/models/shapes/toy"
    if os.path.isdir(path):
        from reschrom.models.pipelines import load_pipeline

        return load_pipeline(path, "cpu", "float32"), path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
    from builders import build_tiny_if_pipeline

    return build_tiny_if_pipeline(resolution=32, seed=0), "tiny IF 32×32 (random weights)"


def _module_model(args: argparse.Namespace):
    from reschrom.models.module import ModuleModel, load_module_model

    if args.module_path:
        spec = {"kind": "module", "path": args.module_path, "factory": args.factory}
        return load_module_model("bench", spec, "cpu", None), f"module {args.factory} from {args.module_path}"
    folder = Path("results/models/shapes/toy_flow")
    if folder.is_dir():
        from reschrom.models.flow import load_flow_t2i

        return ModuleModel.from_object("toy_flow", load_flow_t2i(folder)), f"{folder} as a module model"
    root = Path(__file__).resolve().parents[1]
    spec = {"kind": "module", "path": str(root / "tests" / "helpers" / "user_models"), "factory": "edm_classes:load"}
    return load_module_model("edm_classes", spec, "cpu", None), "tests/helpers/user_models/edm_classes (analytic, 12×12)"


def _interleaved(fns, repeats):
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls[i].append(time.perf_counter() - t0)
            cpus[i].append(time.process_time() - c0)
    return walls, cpus


def main_module(args: argparse.Namespace) -> None:
    from reschrom.measure.measurement import measure_guidance
    from reschrom.sampling.cfg import model_noise, sample_cfg

    den, name = _module_model(args)
    prompt = "a red circle with stripes on a dark background" if den.name == "toy_flow" else "digit 3"
    out_dir = tempfile.mkdtemp(prefix="probe_overhead_")
    cond, unc = den.encode([prompt] * args.images), den.null_condition(args.images)

    def bare() -> None:
        sample_cfg(den, [cond], unc, guidance_scale=5.0, num_inference_steps=args.steps,
                   x_T=model_noise(den, args.images, 0))

    def probed() -> None:
        df, _ = measure_guidance(den, prompt, model="bench", seeds=[0], num_samples=args.images,
                                 guidance_scale=5.0, num_inference_steps=args.steps)
        write_parquet(df, os.path.join(out_dir, "p.parquet"))

    (tb, tp), (cb, cp) = _interleaved([bare, probed], args.repeats)
    mb, mp = statistics.median(tb), statistics.median(tp)
    print(f"model: {name}; {args.steps} steps, {args.images} images, {args.threads} thread(s), {args.repeats} repeats")
    print(f"bare DDIM + CFG    : {mb:.3f} s wall (median; min {min(tb):.3f}), {statistics.median(cb):.3f} s CPU")
    print(f"probe + Parquet    : {mp:.3f} s wall (median; min {min(tp):.3f}), {statistics.median(cp):.3f} s CPU")
    print(f"ratio probed/bare  : wall {mp / mb:.4f} (median), {min(tp) / min(tb):.4f} (min); "
          f"CPU time {statistics.median(cp) / statistics.median(cb):.4f} (median)   goal ≤ 1.05")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--module-path", default=None)
    ap.add_argument("--factory", default="edm_classes:load")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model == "module":
        main_module(args)
        return
    from reschrom.models.pipelines import resolve_device

    dev = resolve_device(args.device)
    dt = getattr(torch, args.dtype)
    pipe, name = _pipeline(args.model)
    pipe = pipe.to(dev, dt)
    name += f" on {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}, {args.dtype}"
    kw = PipelineAdapter.for_pipeline(pipe).call_kwargs(None)
    if args.model == "sd15-random":
        kw.update(height=128, width=128, output_type="latent")
    prompt = "a red circle with stripes on a dark background"
    ac = pipe.scheduler.alphas_cumprod.double().numpy()
    out_dir = tempfile.mkdtemp(prefix="probe_overhead_")

    def call():
        img = pipe(prompt, num_inference_steps=args.steps, guidance_scale=5.0,
                   num_images_per_prompt=args.images, generator=torch.Generator().manual_seed(0), **kw).images
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return img

    def bare() -> torch.Tensor:
        return call()

    def probed() -> torch.Tensor:
        with GuidanceProbe(pipe) as probe:
            img = call()
        df = guidance_frame(probe.result(), model="bench", prompt_id="p", prompt=prompt, seed=0, alphas_cumprod=ac)
        write_parquet(df, os.path.join(out_dir, "p.parquet"))
        return img

    a, b = bare(), probed()
    if dev.type == "cpu":
        assert torch.equal(a, b), "the probe changed the images"
    diff = float((torch.as_tensor(a).float() - torch.as_tensor(b).float()).abs().max())
    tb, tp, cb, cp = [], [], [], []
    for _ in range(args.repeats):
        for fn, wall, cpu in ((bare, tb, cb), (probed, tp, cp)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    mb, mp = statistics.median(tb), statistics.median(tp)
    print(f"model: {name}; {args.steps} steps, {args.images} images, {args.threads} thread(s), {args.repeats} repeats")
    print(f"bare pipeline      : {mb:.3f} s wall (median; min {min(tb):.3f}), {statistics.median(cb):.3f} s CPU")
    print(f"probe + Parquet    : {mp:.3f} s wall (median; min {min(tp):.3f}), {statistics.median(cp):.3f} s CPU")
    print(f"ratio probed/bare  : wall {mp / mb:.4f} (median), {min(tp) / min(tb):.4f} (min); "
          f"CPU time {statistics.median(cp) / statistics.median(cb):.4f} (median)   goal ≤ 1.05")
    if dev.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")
    print(f"images: largest difference probed vs bare {diff:.3g}; per-repeat wall ratios {np.round(np.array(tp) / np.array(tb), 3).tolist()}")
    print("(CPU time is the process's own, less sensitive than wall time to other load on the machine)")


if __name__ == "__main__":
    main()
