"""Incremental reruns: after a complete run, a config change replans only the jobs it affects.

Each case is (override YAML merged over configs/smoke.yaml, expected planned jobs as
{rule: count}). Snakemake decides with ``--rerun-triggers mtime params input code``: a changed
``params`` value reruns the job, and everything downstream of it. To add a case (a model
hyperparameter, a prompt), extend RERUN_CASES and, if the case needs outputs beyond the theory
stage, ``targets`` below.
"""

from __future__ import annotations

import re

import pytest
import yaml

from workflow_utils import copy_workflow, plan, planned_rules, snakemake

pytestmark = pytest.mark.workflow

TRIGGERS = ("--rerun-triggers", "mtime", "params", "input", "code")
# two schedules keep the run short and still show that the other one is left alone
SCHEDULES = ["linear", "cosine"]
BASE = {"theory": {"schedules": SCHEDULES}}


def targets() -> list[str]:
    """The theory stage's final outputs for SCHEDULES (as get_theory_outputs() lists them)."""
    out = []
    for s in SCHEDULES:
        out += [
            f"results/theory/{s}.parquet",
            f"results/figures/time_adjustment_{s}.png",
            f"results/figures/chromatography_theory_{s}.png",
        ]
    return out + ["results/figures/chromatography_atlas.png"]


RERUN_CASES = {
    # a figure option: every figure, no table
    "figures.dpi": (
        {"figures": {"dpi": 41}},
        {"plot_time_adjustment": 2, "plot_chromatography_theory": 2, "plot_chromatography_atlas": 1},
    ),
    # one schedule's parameter: that schedule's table, its two figures and the atlas
    "schedules.linear.beta_end": (
        {"schedules": {"linear": {"beta_end": 0.021}}},
        {
            "theory_table": 1,
            "plot_time_adjustment": 1,
            "plot_chromatography_theory": 1,
            "plot_chromatography_atlas": 1,
        },
    ),
}
# outputs each case must (not) replan, beyond the counts
CASE_OUTPUTS = {
    "schedules.linear.beta_end": {
        "results/theory/linear.parquet",
        "results/figures/time_adjustment_linear.png",
        "results/figures/chromatography_theory_linear.png",
        "results/figures/chromatography_atlas.png",
    },
}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A temp copy of the workflow after a complete run of the theory targets."""
    wd = copy_workflow(tmp_path_factory.mktemp("reruns") / "wf")
    (wd / "base.yaml").write_text(yaml.safe_dump(BASE))
    # through the workstation profile (GPU jobs one at a time), as a user would run it
    proc = snakemake(
        wd, *targets(), "--profile", "profiles/local", "--cores", "2", "--configfile", "configs/smoke.yaml", "base.yaml"
    )
    # the profile's global GPU limit is in force
    assert re.search(r"Provided resources: .*gpu", proc.stdout + proc.stderr), proc.stderr[-3000:]
    return wd


def _configs(wd, override: dict | None) -> list[str]:
    files = ["configs/smoke.yaml", "base.yaml"]
    if override is not None:
        (wd / "override.yaml").write_text(yaml.safe_dump(override))
        files.append("override.yaml")
    return ["--configfile", *files]


def test_complete_run_plans_nothing(done):
    assert planned_rules(done, *targets(), *_configs(done, None), *TRIGGERS) == {}


@pytest.mark.parametrize("case", sorted(RERUN_CASES))
def test_change_reruns_only_what_it_affects(done, case):
    override, expected = RERUN_CASES[case]
    jobs = plan(done, *targets(), *_configs(done, override), *TRIGGERS)
    got = {}
    for j in jobs:
        got[j.rule] = got.get(j.rule, 0) + 1
    assert got == expected, [(j.rule, j.outputs, j.reason) for j in jobs]
    if case in CASE_OUTPUTS:
        assert {o for j in jobs for o in j.outputs} == CASE_OUTPUTS[case]
    assert all("params" in j.reason.lower() or "updated by another job" in j.reason for j in jobs), [
        j.reason for j in jobs
    ]
