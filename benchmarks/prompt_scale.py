"""Prompt suites at scale: the whole measurement in shards of prompts against one job per prompt.

Runs the workflow (a temporary copy, configs/smoke.yaml plus an override) up to
``results/chromatography/bench.parquet`` for N prompts of data/prompts/shapes_suite.tsv, once per
shard size (default: 64, and 1 = one job per prompt, the layout before shards), with the same
``--cores``, and reports:

* the wall time of each whole Snakemake run and the speed-up of shards over one job per prompt
  (goal: ≥ 5× at N = 256, shard_size 64: each job pays its interpreter start, the torch/diffusers
  imports and the model load once, instead of once per prompt);
* that both runs wrote the same dumps (every prompt's band energies equal to 1e-5 relative:
  batched pipeline calls round differently, nothing else differs);
* the summed CPU time of the dump jobs (their benchmark TSVs' cpu_time), a measure that other
  processes on a shared machine do not distort as they do the wall time;
* the peak RSS of the shard jobs (max_rss of their Snakemake benchmark TSVs) per shard size: a
  shard job writes each batch's dumps as it goes, so it must not grow with shard_size.

The model is the trained toy (results/models/shapes/toy of the repository, measured as a
``kind: pipeline`` folder) when it exists, else a tiny random-weight IF pipeline from
tests/helpers/builders.py. Steps and samples are kept small (10 steps, 1 sample, 1 seed, CPU) so that the
comparison finishes in minutes; what it measures is the per-job overhead, which does not depend on
them. Run: .venv/bin/python benchmarks/prompt_scale.py [--n 256] [--sizes 64 1] [--cores 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "helpers"))

from reschrom.io import read_parquet  # noqa: E402
from reschrom.measure.prompts import read_prompt_suite  # noqa: E402
from workflow_utils import copy_workflow  # noqa: E402

STEPS, SAMPLES, BATCH = 10, 1, 8


def model_folder(tmp: Path, prompts: list[str]) -> tuple[Path, str]:
    """The trained toy if the repository has one, else a tiny random IF saved to ``tmp``."""
    toy = REPO / "results/models/shapes/toy"
    if (toy / "model_index.json").is_file():
        return toy, f"the trained toy model ({toy})"
    from builders import build_tiny_if_pipeline

    folder = tmp / "tiny_if"
    build_tiny_if_pipeline(resolution=16, seed=0, texts=prompts, block_out_channels=(32, 64)).save_pretrained(folder)
    return folder, "a tiny random-weight IF pipeline (16×16, tests/helpers/builders.py; no trained toy found)"


def run(tmp: Path, folder: Path, suite: Path, size: int, cores: int) -> tuple[float, Path]:
    wd = copy_workflow(tmp / f"wf_{size}")
    (wd / "bench.yaml").write_text(
        "models:\n"
        f"  bench: {{kind: pipeline, path: '{folder}', dtype: float32}}\n"
        "chromatography:\n"
        "  measure: [bench]\n"
        f"  prompts: '{suite}'\n"
        f"  shard_size: {size}\n"
        f"  batch_prompts: {BATCH}\n"
        f"  num_inference_steps: {STEPS}\n"
        f"  num_samples: {SAMPLES}\n"
        "  seeds: [0]\n"
        "compose: {run: []}\n"
        "spectra: {run: []}\n"
    )
    bindir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [str(bindir / "snakemake"), "results/chromatography/bench.parquet", "--cores", str(cores),
           "--configfile", "configs/smoke.yaml", "bench.yaml", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"shard_size {size}: snakemake failed\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return wall, wd


def job_stats(wd: Path, column: str) -> list[float]:
    """One column (max_rss in MB, cpu_time in s) of every dump job's Snakemake benchmark TSV."""
    out = []
    for tsv in (wd / "results/benchmarks/guidance_dump/bench").glob("*.tsv"):
        with tsv.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        out += [float(r[column]) for r in rows if r.get(column) not in (None, "", "NA", "-")]
    return out


def dumps(wd: Path) -> dict[str, pd.DataFrame]:
    cols = ["seed", "sample", "step", "m", "energy_guidance", "energy_cond", "energy_uncond"]
    return {
        p.stem: read_parquet(p)[cols].sort_values(cols[:4]).reset_index(drop=True)
        for p in (wd / "results/guidance/bench").glob("*.parquet")
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="prompts (the first N of the shapes suite)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 1], help="shard sizes; the last is the baseline")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    suite = read_prompt_suite(REPO / "data/prompts/shapes_suite.tsv").head(args.n)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        path = tmp / "suite.tsv"
        suite[["prompt", "category"]].to_csv(path, sep="\t", index=False)
        folder, what = model_folder(tmp, list(suite["prompt"]))
        print(f"prompt_scale: {len(suite)} prompts, {what}")
        print(f"  small on purpose: {STEPS} steps, {SAMPLES} sample, 1 seed, batch_prompts {BATCH}, CPU, "
              f"--cores {args.cores}; the comparison is of per-job overhead")
        results = {}
        for size in args.sizes:
            wall, wd = run(tmp, folder, path, size, args.cores)
            rss, cpu = job_stats(wd, "max_rss"), job_stats(wd, "cpu_time")
            results[size] = (wall, wd, sum(cpu))
            print(f"  shard_size {size:>4}: {len(rss):>4} dump jobs, whole run {wall:7.1f} s wall, "
                  f"dump jobs {sum(cpu):7.1f} s CPU; peak RSS per job mean {np.mean(rss):5.0f} MB, "
                  f"max {np.max(rss):5.0f} MB", flush=True)
        base = args.sizes[-1]
        ref = dumps(results[base][1])
        assert len(ref) == len(suite), f"{len(ref)} dumps for {len(suite)} prompts"
        for size in args.sizes[:-1]:
            got = dumps(results[size][1])
            assert got.keys() == ref.keys()
            worst = 0.0
            for pid, d in ref.items():
                g = got[pid]
                assert (g[["seed", "sample", "step", "m"]] == d[["seed", "sample", "step", "m"]]).all().all()
                for c in ("energy_guidance", "energy_cond", "energy_uncond"):
                    x, y = g[c].to_numpy(), d[c].to_numpy()
                    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5 * np.abs(y).max(), err_msg=pid)
                    worst = max(worst, float(np.max(np.abs(x - y)) / max(float(np.abs(y).max()), 1e-300)))
            ratio = results[base][0] / results[size][0]
            cpu_ratio = results[base][2] / max(results[size][2], 1e-9)
            print(f"  same dumps: shard_size {size} vs {base}, all {len(ref)} prompts (largest difference {worst:.1e} of the largest energy)")
            print(f"  speed-up of shard_size {size} over shard_size {base}: {ratio:.1f}x wall (goal >= 5x), "
                  f"{cpu_ratio:.1f}x in the dump jobs' CPU time (robust on a busy machine)")


if __name__ == "__main__":
    main()
