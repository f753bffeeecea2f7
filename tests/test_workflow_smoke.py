"""The whole workflow on configs/smoke.yaml in a temporary copy: contracts, determinism,
interruption and resumption (issue 8), and bounds (nothing written outside results/)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from workflow_utils import copy_workflow, snakemake

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
# files whose bytes legitimately differ between runs (timings, logs)
# (training logs and loss figures carry the measured images/s)
VOLATILE = ("results/logs/", "results/benchmarks/", "results/report.html", "training_log.parquet",
            "results/figures/loss_")


def _tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted((root / "results").rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(v in rel for v in VOLATILE) and "/checkpoints/" not in rel:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _snapshot(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if ".snakemake" not in p.parts}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    wd = copy_workflow(tmp_path_factory.mktemp("smoke") / "wf")
    before = _snapshot(wd)
    t0 = time.time()
    snakemake(wd, "--cores", "2", "--configfile", "configs/smoke.yaml", timeout=1500)
    elapsed = time.time() - t0
    return wd, before, elapsed


def test_contracts(smoke_run):
    wd, _, elapsed = smoke_run
    print(f"smoke workflow took {elapsed:.1f} s")
    for pattern, columns in CONTRACTS.items():
        files = sorted(wd.glob(pattern))
        if pattern.startswith("results/theory"):
            assert files, pattern
        for f in files:
            if f.name.endswith("_agreement.parquet"):
                continue
            names = pq.read_schema(f).names
            missing = [c for c in columns if c not in names]
            assert not missing, f"{f.relative_to(wd)} lacks {missing}"
    assert list(wd.glob("results/figures/*.png"))


def test_writes_stay_inside_results(smoke_run):
    wd, before, _ = smoke_run
    new = _snapshot(wd) - before
    outside = sorted(p for p in new if not p.startswith("results/") and p != "results")
    assert not outside, f"written outside results/: {outside[:10]}"


def test_second_run_is_bitwise_identical(smoke_run, tmp_path):
    """Determinism: a second run from scratch gives identical outputs (CPU)."""
    wd, _, _ = smoke_run
    wd2 = copy_workflow(tmp_path / "wf2")
    snakemake(wd2, "--cores", "2", "--configfile", "configs/smoke.yaml", timeout=1500)
    h1, h2 = _tree_hashes(wd), _tree_hashes(wd2)
    assert h1.keys() == h2.keys()
    diff = sorted(k for k in h1 if h1[k] != h2[k])
    assert not diff, f"outputs differ between runs: {diff[:10]}"


def _kill_when(wd: Path, target: str, trigger: str, seed: int) -> bool:
    """Run ``target``; SIGKILL the whole process group once ``trigger`` (a glob) exists."""
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [os.path.join(bindir, "snakemake"), target, "--cores", "2", "--configfile", "configs/smoke.yaml"],
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


# (rule, target, kill trigger, outputs to compare with the uninterrupted run)
INTERRUPTIONS = [
    # killed after its first checkpoint: must resume from it and end bitwise identical
    ("train_t2i", "results/models/shapes/toy", "results/checkpoints/shapes/toy/*", "results/models/shapes/toy/"),
    # killed while sampling an upscaling variant
    ("upscale_sample", "results/upscale/shapes/samples/full.safetensors", "results/logs/upscale_sample/*",
     "results/upscale/shapes/samples/full"),
    # killed while dumping: the atomic write leaves no partial Parquet behind
    ("guidance_dump", "results/chromatography/oracle.parquet", "results/logs/guidance_dump/oracle/*",
     "results/guidance/oracle/"),
]


@pytest.mark.parametrize("rule,target,trigger,compare", INTERRUPTIONS, ids=[i[0] for i in INTERRUPTIONS])
def test_kill_and_rerun_incomplete(smoke_run, tmp_path, rule, target, trigger, compare):
    """kill -9 during a long rule, rerun with --rerun-incomplete: completes, same outputs."""
    wd, _, _ = smoke_run
    ref = {k: v for k, v in _tree_hashes(wd).items() if k.startswith(compare)}
    assert ref, f"the smoke workflow produced nothing under {compare}"
    wd2 = copy_workflow(tmp_path / "wf")
    assert _kill_when(wd2, target, trigger, seed=len(rule)), f"{trigger} never appeared"
    # nothing half-written is visible under the final names
    for p in (wd2 / "results").rglob("*.parquet"):
        pq.read_schema(p)
    # a killed Snakemake leaves its lock behind: --unlock, then --rerun-incomplete (as a user would)
    snakemake(wd2, target, "--unlock", "--configfile", "configs/smoke.yaml")
    snakemake(wd2, target, "--cores", "2", "--configfile", "configs/smoke.yaml", "--rerun-incomplete", timeout=900)
    got = {k: v for k, v in _tree_hashes(wd2).items() if k.startswith(compare)}
    assert got.keys() == ref.keys()
    diff = sorted(k for k in ref if ref[k] != got[k])
    assert not diff, f"outputs differ after interruption: {diff[:10]}"
