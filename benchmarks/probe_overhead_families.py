"""Overhead of the guidance probe (§4.1) on every pipeline family of the test matrix.

One process; for each family of ``tests/models/test_family_matrix.FAMILIES`` (tiny random-weight
pipelines, built offline), the same prompt and seed: wall time of the bare pipeline call and of
the same call under a :class:`reschrom.measure.probe.GuidanceProbe` (bands of g, ε_cond, ε_uncond per
step; for true-CFG loops the two calls of a step paired), median of ``--repeats`` interleaved
runs each, and the ratio probed / bare (goal ≤ 1.05). Also checks the latents are bitwise equal.

Tiny models make the denoiser cheap, so the probe's fixed per-step cost weighs more here than on
a real model: read these ratios as an upper bound.

Run: PYTHONPATH=src:tests .venv/bin/python benchmarks/probe_overhead_families.py [--steps 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))  # builders
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))  # the matrix's FAMILIES

from reschrom.measure.probe import GuidanceProbe


def main(argv: list[str] | None = None) -> int:
    from test_family_matrix import FAMILIES, STRUCT, _kw, _pipe, _run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--family", action="append", help="only these families (repeatable)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'family':<26} {'bare s':>8} {'probed s':>9} {'ratio':>6}  bitwise")
    for name in args.family or list(FAMILIES):
        pipe = _pipe(name)
        kw = {**_kw(name), "num_inference_steps": args.steps}

        def run(pipe=pipe, kw=kw) -> torch.Tensor:  # the matrix's own call (Kandinsky's image
            return _run(pipe, STRUCT, kw)  # embeddings, a Modular pipeline's guider scale)

        ref = run()  # warm-up
        bare, probed = [], []
        same = True
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run()
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with GuidanceProbe(pipe) as probe:
                out = run()
            probe.result()
            probed.append(time.perf_counter() - t0)
            same &= torch.equal(out, ref)
        b, p = statistics.median(bare), statistics.median(probed)
        print(f"{name:<26} {b:8.3f} {p:9.3f} {p / b:6.3f}  {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
