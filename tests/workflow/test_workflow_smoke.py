"""The whole workflow on configs/smoke.yaml (the session's shared smoke run, tests/workflow/conftest.py):
contracts, determinism, interruption and resumption (issue 8), and bounds (nothing written outside
results/)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from workflow_utils import SMOKE, copy_workflow, snakemake, snapshot, tree_hashes

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

CONTRACTS = {
    "results/theory/*.parquet": [
        "schedule", "t", "t_frac", "m", "resolution", "alpha_bar", "snr", "tau_frac", "alpha_bar_tau", "lambda", "r",
    ],
    "results/guidance/*/*.parquet": [
        "model", "prompt_id", "prompt", "seed", "sample", "step", "t", "t_frac", "m", "resolution",
        "energy_guidance", "energy_cond", "energy_uncond",
    ],
    "results/chromatography/*[!t].parquet": [
        "t_frac", "m", "resolution", "r_measured", "r_measured_std", "n_prompts", "r_theory",
    ],
}


def test_contracts(smoke_run):
    wd = smoke_run.wd
    print(f"smoke workflow took {smoke_run.elapsed:.1f} s")
    for pattern, columns in CONTRACTS.items():
        files = sorted(wd.glob(pattern))
        if pattern.startswith("results/theory"):
            assert files, pattern
        for f in files:
            if f.name.endswith(("_agreement.parquet", "_categories.parquet")):
                continue
            names = pq.read_schema(f).names
            missing = [c for c in columns if c not in names]
            assert not missing, f"{f.relative_to(wd)} lacks {missing}"
    assert list(wd.glob("results/figures/*.png"))


def test_writes_stay_inside_results(smoke_run):
    new = snapshot(smoke_run.wd) - smoke_run.before
    outside = sorted(p for p in new if not p.startswith("results/") and p != "results")
    assert not outside, f"written outside results/: {outside[:10]}"


# a second run from scratch of a slice of the DAG: data → training (toy) → guidance dump →
# aggregation; the interruption tests below rerun a training, an upscaling sample and the oracle's
# dumps in a copy of the smoke run and compare them with it too
DETERMINISM_TARGETS = ["results/chromatography/toy.parquet"]


def test_second_run_is_bitwise_identical(smoke_run, tmp_path):
    """Determinism: a second run from scratch gives identical outputs (CPU)."""
    wd2 = copy_workflow(tmp_path / "wf2")
    snakemake(wd2, *DETERMINISM_TARGETS, "--cores", "2", *SMOKE, timeout=900)
    h1, h2 = tree_hashes(smoke_run.wd), tree_hashes(wd2)
    assert all(t in h2 for t in DETERMINISM_TARGETS), sorted(h2)
    assert any(k.startswith("results/models/") for k in h2) and any(k.startswith("results/data/") for k in h2)
    assert h2.keys() <= h1.keys(), sorted(h2.keys() - h1.keys())
    diff = sorted(k for k in h2 if h1[k] != h2[k])
    assert not diff, f"outputs differ between runs: {diff[:10]}"


def _kill_when(wd: Path, target: str, trigger: str, seed: int) -> bool:
    """Run ``target``; SIGKILL the whole process group once ``trigger`` (a glob) exists."""
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [os.path.join(bindir, "snakemake"), target, "--cores", "2", *SMOKE],
        cwd=wd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 600
    fired = False
    while time.time() < deadline and proc.poll() is None:
        if list(wd.glob(trigger)):
            fired = True
            time.sleep(random.Random(seed).uniform(0.0, 0.3))
            break
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return fired


def _remove(wd: Path, patterns: list[str]) -> None:
    for pattern in patterns:
        for p in wd.glob(pattern):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


# (rule, target, what to remove from a copy of the smoke run so that only this rule runs again,
#  kill trigger, outputs to compare with the uninterrupted run)
INTERRUPTIONS = [
    # killed after its first checkpoint: must resume from it and end bitwise identical
    ("train_t2i", "results/models/shapes/toy",
     ["results/models/shapes/toy", "results/checkpoints/shapes/toy", "results/logs/train_t2i/shapes_toy.log"],
     "results/checkpoints/shapes/toy/*", "results/models/shapes/toy/"),
    # killed while sampling the upscaling variants (one job writes them all)
    ("upscale_sample", "results/upscale/shapes/samples/full.safetensors",
     ["results/upscale/shapes/samples", "results/logs/upscale_sample/shapes.log"],
     "results/logs/upscale_sample/shapes.log", "results/upscale/shapes/samples/"),
    # killed while dumping: the atomic write leaves no partial Parquet behind
    ("guidance_dump", "results/chromatography/oracle.parquet",
     ["results/guidance/oracle", "results/chromatography/oracle*", "results/logs/guidance_dump/oracle"],
     "results/logs/guidance_dump/oracle/*", "results/guidance/oracle/"),
]  # fmt: skip


@pytest.mark.parametrize("rule,target,remove,trigger,compare", INTERRUPTIONS, ids=[i[0] for i in INTERRUPTIONS])
def test_kill_and_rerun_incomplete(smoke_run, smoke_copy, rule, target, remove, trigger, compare):
    """kill -9 during a long rule, rerun with --rerun-incomplete: completes, same outputs."""
    ref = {k: v for k, v in tree_hashes(smoke_run.wd).items() if k.startswith(compare)}
    assert ref, f"the smoke workflow produced nothing under {compare}"
    wd2 = smoke_copy
    _remove(wd2, remove)
    assert not list(wd2.glob(trigger)) and not (wd2 / target).exists()
    assert _kill_when(wd2, target, trigger, seed=len(rule)), f"{trigger} never appeared"
    # nothing half-written is visible under the final names
    for p in (wd2 / "results").rglob("*.parquet"):
        pq.read_schema(p)
    # a killed Snakemake leaves its lock behind: --unlock, then --rerun-incomplete (as a user would)
    snakemake(wd2, target, "--unlock", *SMOKE)
    snakemake(wd2, target, "--cores", "2", *SMOKE, "--rerun-incomplete", timeout=900)
    got = {k: v for k, v in tree_hashes(wd2).items() if k.startswith(compare)}
    assert got.keys() == ref.keys()
    diff = sorted(k for k in ref if ref[k] != got[k])
    assert not diff, f"outputs differ after interruption: {diff[:10]}"
