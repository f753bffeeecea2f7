"""Incremental reruns: after a complete run, a config change replans only the jobs it affects.

Each case is (override YAML merged over configs/smoke.yaml, expected planned jobs as
{rule: count}), planned in the session's smoke run (tests/workflow/conftest.py). Snakemake decides with
``--rerun-triggers mtime params input code``: a changed ``params`` value reruns the job, and
everything downstream of it. To add a case (a model hyperparameter, a prompt), extend
RERUN_CASES and, if the case needs outputs beyond the theory stage, ``targets`` below.
"""

from __future__ import annotations

import re

import pytest
import yaml

from workflow_utils import REPO, SMOKE, plan, planned_rules

pytestmark = pytest.mark.workflow

TRIGGERS = ("--rerun-triggers", "mtime", "params", "input", "code")
# the smoke config's schedules: a change to one of them leaves the other alone
SCHEDULES = yaml.safe_load((REPO / "configs/smoke.yaml").read_text())["theory"]["schedules"]
N = len(SCHEDULES)


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
        {"plot_time_adjustment": N, "plot_chromatography_theory": N, "plot_chromatography_atlas": 1},
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


def test_schedules_of_the_cases():
    assert "linear" in SCHEDULES and N >= 2, "the cases need linear and one other schedule"


def test_smoke_run_went_through_the_workstation_profile(smoke_run):
    # profiles/local's global GPU limit is in force
    assert re.search(r"Provided resources: .*gpu", smoke_run.log), smoke_run.log[-3000:]


def test_complete_run_plans_nothing(smoke_run):
    """Nothing of the whole smoke workflow is planned again (no unstable params, inputs or code)."""
    assert planned_rules(smoke_run.wd, *SMOKE, *TRIGGERS) == {}


def _configs(tmp_path, override: dict | None) -> list[str]:
    files = list(SMOKE[1:])
    if override is not None:
        (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
        files.append(str(tmp_path / "override.yaml"))
    return ["--configfile", *files]


@pytest.mark.parametrize("case", sorted(RERUN_CASES))
def test_change_reruns_only_what_it_affects(smoke_run, tmp_path, case):
    override, expected = RERUN_CASES[case]
    jobs = plan(smoke_run.wd, *targets(), *_configs(tmp_path, override), *TRIGGERS)
    got = {}
    for j in jobs:
        got[j.rule] = got.get(j.rule, 0) + 1
    assert got == expected, [(j.rule, j.outputs, j.reason) for j in jobs]
    if case in CASE_OUTPUTS:
        assert {o for j in jobs for o in j.outputs} == CASE_OUTPUTS[case]
    assert all("params" in j.reason.lower() or "updated by another job" in j.reason for j in jobs), [
        j.reason for j in jobs
    ]
