"""Cluster execution: the smoke workflow through profiles/slurm and snakemake-executor-plugin-slurm,
against a fake SLURM (tests/helpers/fake_slurm.py) that records every sbatch/srun call and runs the jobs.

GPU rules must reach SLURM with a GPU request, CPU rules without one; both with the account,
the partition picked from profiles/slurm/partitions.yaml, and the memory/runtime/threads of
their config["resources"] group.
"""

from __future__ import annotations

import shlex
import time

import pytest
import yaml

import fake_slurm
from reschrom.resources import rule_groups
from workflow_utils import REPO, copy_workflow, plan, snakemake

pytestmark = pytest.mark.workflow

pytest.importorskip("snakemake_executor_plugin_slurm")

THEORY_RULES = {"theory_table", "plot_time_adjustment", "plot_chromatography_theory", "plot_chromatography_atlas"}


def _opt(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _rule_of(argv: list[str]) -> str:
    comment = _opt(argv, "--comment") or ""
    assert comment.startswith("rule_"), argv
    return comment[len("rule_") :].split("_wildcards_")[0]


def test_profiles_parse():
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert "slurm_account" in slurm["default-resources"]
    assert (REPO / "profiles/slurm" / slurm["slurm-partition-config"]).exists()
    local = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    assert local["resources"]["gpu"] == 1


def test_smoke_on_fake_slurm_requests_gpus_only_for_gpu_rules(tmp_path, monkeypatch):
    wd = copy_workflow(tmp_path / "wf")
    # the smoke config has no GPU rule group yet: make `plot` one for this run; one schedule
    # keeps it to 4 jobs (table, 2 figures, atlas: every theory target of that config)
    smoke = yaml.safe_load((wd / "configs/smoke.yaml").read_text())
    plot = dict(smoke["resources"]["default"], gpu=1, mem_mb=1500, runtime=7, threads=2)
    names = ["linear"]
    override = {"resources": {"plot": plot}, "theory": {"schedules": names}}
    (wd / "gpu_plot.yaml").write_text(yaml.safe_dump(override))
    state = tmp_path / "slurm"
    for key, val in fake_slurm.install(tmp_path / "bin", state).items():
        monkeypatch.setenv(key, val)
    monkeypatch.setenv("RESCHROM_SLURM_ACCOUNT", fake_slurm.ACCOUNT)

    targets = [
        "results/theory/linear.parquet",
        "results/figures/time_adjustment_linear.png",
        "results/figures/chromatography_theory_linear.png",
        "results/figures/chromatography_atlas.png",
    ]
    t0 = time.monotonic()
    proc = snakemake(
        wd,
        *targets,
        "--profile", "profiles/slurm",
        "--configfile", "configs/smoke.yaml", "gpu_plot.yaml",
        "--slurm-init-seconds-before-status-checks", "1",
        "--latency-wait", "5",
        timeout=300,
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    log = proc.stdout + proc.stderr

    # every theory target was made by SLURM jobs
    for s in names:
        assert (wd / f"results/theory/{s}.parquet").stat().st_size > 0
        assert (wd / f"results/figures/chromatography_theory_{s}.png").stat().st_size > 0
        assert (wd / f"results/figures/time_adjustment_{s}.png").stat().st_size > 0
    assert (wd / "results/figures/chromatography_atlas.png").stat().st_size > 0

    sbatch = fake_slurm.calls(state, "sbatch")
    by_rule: dict[str, list[list[str]]] = {}
    for argv in sbatch:
        by_rule.setdefault(_rule_of(argv), []).append(argv)
    assert set(by_rule) == THEORY_RULES, log
    assert len(by_rule["theory_table"]) == len(names)
    assert len(sbatch) == 3 * len(names) + 1
    assert all(j["state"] == "COMPLETED" for j in fake_slurm.jobs(state)), fake_slurm.jobs(state)

    for rule, argvs in by_rule.items():
        gpu_rule = rule.startswith("plot_")
        for argv in argvs:
            cmd = shlex.join(argv)
            assert "--parsable" in argv
            assert _opt(argv, "-A") == fake_slurm.ACCOUNT, cmd
            assert _opt(argv, "--cpus-per-task") == ("2" if gpu_rule else "1"), cmd
            if gpu_rule:
                assert _opt(argv, "--gpus") == "1", cmd
                assert _opt(argv, "-p") == "gpu", cmd
                assert (_opt(argv, "--mem"), _opt(argv, "-t")) == ("1500", "7"), cmd
            else:
                assert "--gpus" not in cmd and "--gres" not in cmd, cmd
                assert _opt(argv, "-p") == "cpu", cmd
                cpu = smoke["resources"]["default"]
                assert (_opt(argv, "--mem"), _opt(argv, "-t")) == (str(cpu["mem_mb"]), str(cpu["runtime"])), cmd

    # inside the allocation the jobstep plugin runs each job with srun; GPU steps ask for the GPU too
    srun = fake_slurm.calls(state, "srun")
    assert len(srun) == len(sbatch)
    gpu_steps = [a for a in srun if "--gpus=1" in a]
    assert len(gpu_steps) == 2 * len(names) + 1
    # status came from sacct/squeue, never from guessing
    assert fake_slurm.calls(state, "sacct") or fake_slurm.calls(state, "squeue")
    print(f"fake-SLURM smoke run: {len(sbatch)} jobs in {elapsed:.1f} s")


def test_unset_account_stops_before_any_submission(tmp_path, monkeypatch):
    wd = copy_workflow(tmp_path / "wf")
    state = tmp_path / "slurm"
    for key, val in fake_slurm.install(tmp_path / "bin", state).items():
        monkeypatch.setenv(key, val)
    monkeypatch.delenv("RESCHROM_SLURM_ACCOUNT", raising=False)
    proc = snakemake(
        wd,
        "results/theory/linear.parquet",
        "--profile", "profiles/slurm",
        "--configfile", "configs/smoke.yaml",
        "--slurm-init-seconds-before-status-checks", "1",
        check=False,
        timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "account $RESCHROM_SLURM_ACCOUNT appears to be invalid" in out, out[-3000:]
    assert fake_slurm.ACCOUNT in out  # the accounts one may use are listed
    assert fake_slurm.calls(state, "sbatch") == []


def _rule_groups() -> dict[str, str]:
    """{rule: resource group} of rules/*.smk (`use rule … with:` twins in their base's group)."""
    return rule_groups(REPO / "rules")


@pytest.mark.parametrize("configfile", ["configs/paper.yaml", "config.yaml"])
def test_config_plans_offline_with_gpus_for_gpu_groups(tmp_path, monkeypatch, configfile):
    """The paper configuration (and the default) plans its whole DAG offline (no model is loaded
    or downloaded at planning time: empty HF cache, HF_HUB_OFFLINE=1), through the SLURM profile,
    and the jobs of GPU groups (config resources.<group>.gpu > 0) carry the gpu resource, the
    others none."""
    wd = copy_workflow(tmp_path / "wf")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    paper = yaml.safe_load((wd / configfile).read_text())
    jobs = plan(wd, "--configfile", configfile, "--profile", "profiles/slurm", timeout=600)
    planned = {j.rule for j in jobs}
    assert "theory_table" in planned
    assert sum(j.rule == "theory_table" for j in jobs) == len(paper["theory"]["schedules"])
    assert not (wd / "results").exists(), "a dry run wrote results"

    res = paper["resources"]
    gpu_groups = {g for g, r in res.items() if dict(res.get("default", {}), **r).get("gpu", 0) > 0}
    groups = _rule_groups()
    for j in jobs:
        group = groups.get(j.rule, "probe" if j.rule.startswith("guidance_dump_") else "default")
        if group in gpu_groups:
            assert j.resources.get("gpu") == str(res[group]["gpu"]), (j.rule, group, j.resources)
        else:
            assert "gpu" not in j.resources, (j.rule, group, j.resources)
    print(f"{configfile} plan: {len(jobs)} jobs, rules: {sorted(planned)}")
