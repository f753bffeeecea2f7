"""Cost of time-dependent prompt composing (§4.3) against plain CFG and naive composition.

One process, one pipeline, the same seed: wall time of
  * plain CFG with one prompt (the pipeline as is),
  * Heaviside composing of two prompts (eq. 25, η = 0.5): only the active prompt is evaluated,
    inside the pipeline's batched [uncond, cond] call (goal: ratio ≤ 1.05 against plain CFG),
  * naive composition: both prompts evaluated at every step (about 1.5× for two prompts),
``--repeats`` interleaved runs each; the ratios use the minimum over runs of the process CPU
time (single-threaded by default: robust to other load on a shared machine), wall times are
printed beside them. Also prints the denoiser rows per step of each mode.

Run: .venv/bin/python benchmarks/compose_cost.py [--model PATH] [--steps 30] [--images 4]
(default model: a random-weight tiny IF pipeline at 32×32, built offline; --model loads a
pipeline folder such as results/models/shapes/t2i).
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reschrom.compose.composer import PromptComposer
from reschrom.compose.weights import heaviside_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="pipeline folder (default: tiny IF, random weights)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.model:
        from reschrom.models.pipelines import load_pipeline

        pipe = load_pipeline(args.model, device="cpu", dtype="float32")
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
        from builders import build_tiny_if_pipeline

        pipe = build_tiny_if_pipeline(resolution=args.resolution, block_out_channels=(64, 128))
    s, x = "a red circle", "a red circle with stripes"
    common = dict(num_inference_steps=args.steps, guidance_scale=4.0, output_type="pt",
                  num_images_per_prompt=args.images)
    plain_kw = {"clean_caption": False} if "clean_caption" in inspect.signature(pipe.__call__).parameters else {}
    heavi = PromptComposer(pipe, [s, x], heaviside_weights(0.5))
    naive = PromptComposer(pipe, [s, x], heaviside_weights(0.5), prune_below=-1.0)

    def plain():
        return pipe(prompt=s, generator=torch.Generator().manual_seed(0), **common, **plain_kw).images

    def run_h():
        return heavi(generator=torch.Generator().manual_seed(0), **common).images

    def run_n():
        return naive(generator=torch.Generator().manual_seed(0), **common).images

    modes = {"plain CFG": plain, "heaviside": run_h, "naive": run_n}
    with torch.no_grad():
        for f in modes.values():  # warm-up
            f()
        cpu: dict[str, list[float]] = {k: [] for k in modes}
        wall: dict[str, list[float]] = {k: [] for k in modes}
        outs = {}
        for _ in range(args.repeats):
            for name, f in modes.items():
                c0, w0 = time.process_time(), time.perf_counter()
                outs[name] = f()
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
    med = {k: min(v) for k, v in cpu.items()}
    rows_h = sorted({r.rows for r in heavi.records})
    rows_n = sorted({r.rows for r in naive.records})
    diff = float((outs["heaviside"] - outs["naive"]).abs().max())
    print(f"pipeline: {type(pipe).__name__}, {args.images} images × {args.steps} steps, "
          f"{args.repeats} runs each, {torch.get_num_threads()} thread(s)")
    for k, v in med.items():
        print(f"  {k:10s} CPU {v:8.3f} s (min)   wall {statistics.median(wall[k]):8.3f} s (median)")
    print(f"  denoiser rows per step: plain {2 * args.images}, heaviside {rows_h}, naive {rows_n}")
    print(f"  max |heaviside - naive| image difference: {diff:.2e} (same maths, different batches)")
    print(f"ratio heaviside / plain CFG: {med['heaviside'] / med['plain CFG']:.3f}   (goal ≤ 1.05)")
    print(f"ratio naive / plain CFG:     {med['naive'] / med['plain CFG']:.3f}   (about 1.5 expected)")
    print(f"ratio naive / heaviside:     {med['naive'] / med['heaviside']:.3f}")
    assert np.isfinite(list(med.values())).all()


if __name__ == "__main__":
    main()
