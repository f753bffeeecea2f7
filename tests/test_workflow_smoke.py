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
VOLATILE = ("results/logs/", "results/benchmarks/", "results/report.html", "training_log.parquet")


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


def _kill_during(wd: Path, rule_log_dir: str, seed: int) -> bool:
    """Start a run, SIGKILL the whole process group once a job of the rule has started."""
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [os.path.join(bindir, "snakemake"), "--cores", "2", "--configfile", "configs/smoke.yaml"],
        cwd=wd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 600
    started = False
    while time.time() < deadline and proc.poll() is None:
        if list((wd / "results/logs" / rule_log_dir).glob("**/*")):
            started = True
            time.sleep(random.Random(seed).uniform(0.05, 1.5))
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return started


INTERRUPTIBLE = ["train_lowres", "train_t2i", "sample_upscale", "guidance_dump", "compose_sweep"]


@pytest.mark.parametrize("rule", INTERRUPTIBLE)
def test_kill_and_rerun_incomplete(smoke_run, tmp_path, rule):
    """kill -9 during a long rule, rerun with --rerun-incomplete: completes, same outputs."""
    wd, _, _ = smoke_run
    ref = _tree_hashes(wd)
    if not (wd / "results/logs" / rule).exists():
        pytest.skip(f"the smoke workflow has no rule {rule}")
    wd2 = copy_workflow(tmp_path / "wf")
    assert _kill_during(wd2, rule, seed=hash(rule) % 1000)
    snakemake(wd2, "--cores", "2", "--configfile", "configs/smoke.yaml", "--rerun-incomplete", timeout=1500)
    got = _tree_hashes(wd2)
    assert got.keys() == ref.keys()
    diff = sorted(k for k in ref if ref[k] != got[k])
    assert not diff, f"outputs differ after interruption: {diff[:10]}"
