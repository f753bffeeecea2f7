"""A stage list emptied on purpose (``chromatography.measure: []`` …) runs the rest of the
workflow and says so in one line per emptied stage, once, when Snakemake plans."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reschrom.config import EMPTY_STAGES, empty_stage_notices, load_config_file, validate_config
from workflow_utils import copy_workflow, snakemake

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
MEASURE_LINE = "reschrom: chromatography.measure is empty: no measurement of CFG will run"


def _config(*overrides: dict) -> dict:
    """config.yaml, then configs/smoke.yaml, then ``overrides``, validated (defaults filled)."""
    from snakemake.utils import update_config

    cfg = load_config_file(REPO / "config.yaml")
    for o in (yaml.safe_load((REPO / "configs/smoke.yaml").read_text()), *overrides):
        update_config(cfg, o)
    return validate_config(cfg, SCHEMA)


@pytest.mark.parametrize("name", ["config.yaml", "configs/smoke.yaml", "configs/paper.yaml"])
def test_shipped_configs_empty_no_stage(name):
    from snakemake.utils import update_config

    cfg = load_config_file(REPO / "config.yaml")
    if name != "config.yaml":
        update_config(cfg, yaml.safe_load((REPO / name).read_text()))
    assert empty_stage_notices(validate_config(cfg, SCHEMA)) == []


def test_each_empty_stage_list_is_one_line():
    lines = empty_stage_notices(_config({"chromatography": {"measure": []}}))
    assert len(lines) == 1 and lines[0].startswith(MEASURE_LINE), lines
    emptied = _config(
        {"chromatography": {"measure": []}, "compose": {"run": []}, "spectra": {"run": []},
         "design": {"schedules": [], "nfe": {"run": []}}, "guidance_design": {"run": []}}
    )  # fmt: skip
    lines = empty_stage_notices(emptied)
    assert [ln.split(" is empty")[0] for ln in lines] == [f"reschrom: {'.'.join(k)}" for k in EMPTY_STAGES]
    assert all("\n" not in ln for ln in lines)


def test_no_trained_model_for_upscaling_is_one_line():
    cfg = _config()
    assert cfg["upscale"]["source"] == "trained" and not any(
        ln.startswith("reschrom: upscale") for ln in empty_stage_notices(cfg)
    )
    cfg["models"] = {n: m for n, m in cfg["models"].items() if m["kind"] != "trained"}
    lines = [ln for ln in empty_stage_notices(cfg) if ln.startswith("reschrom: upscale")]
    assert lines == ["reschrom: upscale.source is trained but the registry has no trained model: no upscaling will run"]
    cfg["upscale"]["source"] = "analytic"
    assert not [ln for ln in empty_stage_notices(cfg) if ln.startswith("reschrom: upscale")]


@pytest.mark.workflow
def test_empty_measure_list_is_said_once_at_planning(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "empty.yaml").write_text("chromatography:\n  measure: []\n")
    args = ("--configfile", "configs/smoke.yaml", "empty.yaml")
    proc = snakemake(wd, "-n", *args)
    notices = [ln for ln in proc.stderr.splitlines() if ln.startswith("reschrom:")]
    assert len(notices) == 1 and notices[0].startswith(MEASURE_LINE), proc.stderr[-3000:]
    assert "guidance_dump" not in proc.stdout + proc.stderr  # the rest of the run is planned, without it
    assert "theory_table" in proc.stdout + proc.stderr
    # a real run says it once too (a job that re-reads the Snakefile in its own process, as on a
    # cluster, stays quiet: workflow.is_main_process)
    proc = snakemake(wd, "results/theory/linear.parquet", "--cores", "1", *args)
    assert (wd / "results/theory/linear.parquet").stat().st_size > 0
    console = proc.stdout + proc.stderr
    assert console.count("chromatography.measure is empty") == 1, console[-3000:]
