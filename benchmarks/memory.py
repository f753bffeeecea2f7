"""Peak memory of the guidance dumps and their aggregation for 10 and 100 prompts (oracle).

Each configuration runs in a fresh subprocess so that its peak RSS (ru_maxrss) is its own:
  dump   — one oracle guidance dump job (what each per-prompt Snakemake job costs);
  agg N  — aggregation of N dumps (streams over the files; must not grow with N).
The N dumps are written once by calling the oracle on N distinct prompts (cycling through the
oracle's concepts with distinct wording, so every file is a real measurement).
Run: .venv/bin/python benchmarks/memory.py [--resolution 64] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
if args["task"] == "dumps":
    import torch
    torch.set_num_threads(1)
    from reschrom.measure import write_guidance_dump
    for i, (prompt, out) in enumerate(zip(args["prompts"], args["outs"])):
        write_guidance_dump({"name": "oracle", "kind": "oracle"}, args["spec"], prompt, out, model="oracle",
                            device="cpu")
else:
    from reschrom.measure import aggregate_chromatography
    df = aggregate_chromatography(args["dumps"])
    assert int(df["n_prompts"].max()) <= len(args["dumps"])
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - t0}))
"""


def _child(payload: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(payload)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--samples", type=int, default=2)
    args = ap.parse_args()
    spec = {
        "resolution": args.resolution,
        "guidance_scale": 5.0,
        "num_inference_steps": args.steps,
        "num_samples": args.samples,
        "seeds": [0],
    }
    concepts = ["a disc", "a square", "a horizon", "grass", "clouds", "marble"]
    with tempfile.TemporaryDirectory() as tmp:
        prompts = [f"{concepts[i % len(concepts)]} number {i}" for i in range(100)]
        outs = [str(Path(tmp) / f"p{i:03d}.parquet") for i in range(100)]
        one = _child({"task": "dumps", "spec": spec, "prompts": prompts[:1], "outs": outs[:1]})
        t0 = time.perf_counter()
        _child({"task": "dumps", "spec": spec, "prompts": prompts[1:], "outs": outs[1:]})
        t_dumps = time.perf_counter() - t0
        agg10 = _child({"task": "agg", "dumps": outs[:10]})
        agg100 = _child({"task": "agg", "dumps": outs})
    print(f"oracle {args.resolution}x{args.resolution}, {args.steps} steps, {args.samples} samples/prompt")
    print(f"one dump job:          peak RSS {one['peak_rss_mb']:.0f} MB, {one['seconds']:.2f} s")
    print(f"99 more dumps:         {t_dumps:.1f} s")
    print(f"aggregate  10 prompts: peak RSS {agg10['peak_rss_mb']:.0f} MB, {agg10['seconds']:.2f} s")
    print(f"aggregate 100 prompts: peak RSS {agg100['peak_rss_mb']:.0f} MB, {agg100['seconds']:.2f} s")
    print(f"peak RSS ratio 100/10 prompts: {agg100['peak_rss_mb'] / agg10['peak_rss_mb']:.3f} (goal: ~1.0)")


if __name__ == "__main__":
    main()
