"""Overhead of the guidance probe (§4.1) and its Parquet dump against the bare pipeline call.

One process, one pipeline, the same prompt and seed: wall time of
  * the pipeline call as is (baseline),
  * the same call under a :class:`reschrom.probe.GuidanceProbe` plus building the dump table
    and writing it with ``reschrom.io.write_parquet`` (goal: ratio ≤ 1.05 on CPU),
median of ``--repeats`` runs each, interleaved. Also checks that the images are bitwise equal.

Run: .venv/bin/python benchmarks/probe_overhead.py [--model PATH] [--steps 50] [--images 4]
(default: results/models/shapes/t2i if it exists, else a random-weight tiny IF pipeline at
32×32 built offline; ``--model oracle`` uses the analytic oracle at 64×64).
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

from reschrom.adapters import PipelineAdapter
from reschrom.io import write_parquet
from reschrom.probe import GuidanceProbe, guidance_frame


def _pipeline(model: str | None):
    if model == "oracle":
        from reschrom.oracle import build_oracle_pipeline

        return build_oracle_pipeline(64), "oracle 64×64"
    path = model or "results/models/shapes/t2i"
    if os.path.isdir(path):
        from reschrom.pipelines import load_pipeline

        return load_pipeline(path, "cpu", "float32"), path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from builders import build_tiny_if_pipeline

    return build_tiny_if_pipeline(resolution=32, seed=0), "tiny IF 32×32 (random weights)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe, name = _pipeline(args.model)
    kw = PipelineAdapter.for_pipeline(pipe).call_kwargs(None)
    prompt = "a red circle with stripes on a dark background"
    ac = pipe.scheduler.alphas_cumprod.double().numpy()
    out_dir = tempfile.mkdtemp(prefix="probe_overhead_")

    def call():
        return pipe(prompt, num_inference_steps=args.steps, guidance_scale=5.0,
                    num_images_per_prompt=args.images, generator=torch.Generator().manual_seed(0), **kw).images

    def bare() -> torch.Tensor:
        return call()

    def probed() -> torch.Tensor:
        with GuidanceProbe(pipe) as probe:
            img = call()
        df = guidance_frame(probe.result(), model="bench", prompt_id="p", prompt=prompt, seed=0, alphas_cumprod=ac)
        write_parquet(df, os.path.join(out_dir, "p.parquet"))
        return img

    assert torch.equal(bare(), probed()), "the probe changed the images"
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
    print(f"images bitwise equal: True; per-repeat wall ratios {np.round(np.array(tp) / np.array(tb), 3).tolist()}")
    print("(CPU time is the process's own, less sensitive than wall time to other load on the machine)")


if __name__ == "__main__":
    main()
