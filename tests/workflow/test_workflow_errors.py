"""A job that fails says why on the console, in one line (reschrom.joblog), for every kind of job:
a user model at measurement time, training, data and plot jobs. The full traceback stays in the
job's log, which ends on the same line."""

from __future__ import annotations

import re

import pytest

from reschrom.measure.prompts import prompt_id
from workflow_utils import broken_module_config, copy_workflow, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

def test_failed_jobs_print_their_one_line_error_on_the_console(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "broken.yaml").write_text(broken_module_config(tmp_path))
    # inputs that exist but are corrupt: a data job, a training job and a plot job read them
    level0 = wd / "results/data/shapes/train/level_0.safetensors"
    theory = wd / "results/theory/linear.parquet"
    for f in (level0, theory):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"not a real file\n")
    targets = {
        "guidance_dump": f"results/guidance/bad/{prompt_id('digit 3')}.parquet",
        "downsample": "results/data/shapes/train/level_1.safetensors",
        "train_residual": "results/models/shapes/residual",
        "plot_time_adjustment": "results/figures/time_adjustment_linear.png",
    }
    proc = snakemake(
        wd, *targets.values(), "--cores", "2", "--keep-going",
        "--configfile", "configs/smoke.yaml", "broken.yaml", check=False,
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0
    lines = [ln for ln in console.splitlines() if ln.startswith("reschrom: ")]
    for rule, target in targets.items():
        assert not (wd / target).exists(), target
        mine = [ln for ln in lines if re.match(rf"reschrom: {rule}\w*( \(|:)", ln)]
        assert len(mine) == 1, (rule, lines, console[-6000:])
    by_rule = {rule: next(ln for ln in lines if ln.startswith(f"reschrom: {rule}")) for rule in targets}
    # the culprit: the model, its factory, the problem
    dump = by_rule["guidance_dump"]
    assert "ModelContractError" in dump and "'bad'" in dump and "broken:load" in dump and "shape" in dump, dump
    # the corrupt file, named, with the job's wildcards
    for rule, f in (("downsample", level0), ("train_residual", level0), ("plot_time_adjustment", theory)):
        line = by_rule[rule]
        assert str(f.relative_to(wd)) in line and "Traceback" not in line, line
    assert "(dataset=shapes, split=train, m=1)" in by_rule["downsample"], by_rule["downsample"]
    # the log has the full traceback and ends on the same line
    log = (wd / "results/logs/downsample/shapes_train_1.log").read_text().splitlines()
    assert any(ln.startswith("Traceback") for ln in log) and log[-1] == by_rule["downsample"], log[-5:]


def test_failed_slurm_job_shows_its_one_line_error_through_the_profile(tmp_path, monkeypatch):
    """Under profiles/slurm a job's stderr goes to its SLURM log, not the console: the profile's
    show-failed-logs prints the job's log, which ends on the one-line error."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    import fake_slurm

    wd = copy_workflow(tmp_path / "wf")
    theory = wd / "results/theory/linear.parquet"
    theory.parent.mkdir(parents=True)
    theory.write_bytes(b"not a real file\n")
    state = tmp_path / "slurm"
    for key, val in fake_slurm.install(tmp_path / "bin", state).items():
        monkeypatch.setenv(key, val)
    monkeypatch.setenv("RESCHROM_SLURM_ACCOUNT", fake_slurm.ACCOUNT)
    proc = snakemake(
        wd, "results/figures/time_adjustment_linear.png",
        "--profile", "profiles/slurm", "--configfile", "configs/smoke.yaml",
        "--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5", "--retries", "0",
        check=False, timeout=300,
    )
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert len(fake_slurm.calls(state, "sbatch")) == 1
    line = "reschrom: plot_time_adjustment (schedule=linear): CorruptFileError: corrupt Parquet file results/theory/linear.parquet"
    assert any(ln.strip().startswith(line) for ln in console.splitlines()), console[-6000:]
