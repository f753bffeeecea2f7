"""Cost per step of the guidance rules against plain CFG (goal ≤ 1.02×), same process.

A random-weight IF-style pipeline (tests/helpers/builders.py; learned variance) at ``--resolution``
samples ``--images`` images × ``--steps`` steps with its own CFG, then through
:class:`reschrom.guidance.apply.GuidedPipeline` with each rule; runs are interleaved, the median
CPU time of ``--repeats`` runs is compared. No rule adds a denoiser evaluation.

    .venv/bin/python benchmarks/guidance_cost.py [--resolution 32] [--images 4] [--steps 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from builders import build_tiny_if_pipeline  # noqa: E402
from reschrom.guidance.apply import GuidedPipeline  # noqa: E402
from reschrom.guidance.rules import make_rule  # noqa: E402
from reschrom.models.adapters import PipelineAdapter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pipe = build_tiny_if_pipeline(resolution=args.resolution)
    pipe.set_progress_bar_config(disable=True)
    sched = PipelineAdapter.for_pipeline(pipe).schedule()
    kw = dict(prompt=["a red circle"] * args.images, num_inference_steps=args.steps, output_type="pt", clean_caption=False)
    runs = {
        "cfg (pipeline)": lambda g: pipe(guidance_scale=5.0, generator=g, **kw),
        "chroma": lambda g: GuidedPipeline(pipe, make_rule("chroma", 5.0, schedule=sched))(generator=g, **kw),
        "chroma_window": lambda g: GuidedPipeline(pipe, make_rule("chroma_window", 5.0, schedule=sched))(generator=g, **kw),
        "chroma_onset": lambda g: GuidedPipeline(pipe, make_rule("chroma_onset", 5.0, schedule=sched))(generator=g, **kw),
        "interval": lambda g: GuidedPipeline(pipe, make_rule("interval", 5.0, window=[0.2, 0.8]))(generator=g, **kw),
        "fdg (diffusers)": lambda g: GuidedPipeline(pipe, make_rule("fdg", [5.0, 2.0]))(generator=g, **kw),
        "apg (diffusers)": lambda g: GuidedPipeline(pipe, make_rule("apg", 5.0))(generator=g, **kw),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():  # warm-up
        f(torch.Generator().manual_seed(0))
    for _ in range(args.repeats):
        for name, f in runs.items():
            t0 = time.process_time()
            f(torch.Generator().manual_seed(0))
            times[name].append(time.process_time() - t0)
    base = statistics.median(times["cfg (pipeline)"])
    print(f"{args.images} images × {args.steps} steps, {args.resolution}×{args.resolution}, 1 thread, median of {args.repeats} (CPU s)")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"  {name:18s} {m:7.3f} s   {m / base:5.3f}× plain CFG   per step {1000 * m / args.steps:6.1f} ms")


if __name__ == "__main__":
    main()
