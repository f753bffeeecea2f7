"""The measured-chromatography stage of the workflow (the oracle's outputs of the session's smoke
run), and what adding a prompt replans."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from reschrom.measure.aggregate import CHROMATOGRAPHY_COLUMNS
from reschrom.measure.guidance import GUIDANCE_COLUMNS
from reschrom.measure.prompts import prompt_id
from workflow_utils import SMOKE, plan

pytestmark = pytest.mark.workflow

ODD = 'a "disc"/../ on grass\nnewline'
PROMPTS = ["a disc", "grass"]  # configs/smoke.yaml: chromatography.overrides.oracle.prompts
# what a new prompt may replan besides its dump: the stage's tables and figures of that model
DOWNSTREAM = {
    "aggregate_chromatography",
    "plot_measured_chromatography",
    "plot_prompt_chromatography",
    "plot_chromatography_categories",
}


def _targets():
    return [
        "results/chromatography/oracle.parquet",
        "results/chromatography/oracle_agreement.parquet",
        "results/figures/chromatography_oracle.png",
        "results/figures/chromatography_prompts_oracle.png",
    ]


def test_oracle_chromatography(smoke_run):
    wd = smoke_run.wd
    for t in _targets():
        assert (wd / t).stat().st_size > 0, t
    for p in PROMPTS:
        dump = pq.read_table(wd / f"results/guidance/oracle/{prompt_id(p)}.parquet").to_pandas()
        assert list(dump.columns)[: len(GUIDANCE_COLUMNS)] == GUIDANCE_COLUMNS
        assert set(dump["prompt"]) == {p}
    chrom = pq.read_table(wd / "results/chromatography/oracle.parquet").to_pandas()
    assert list(chrom.columns)[: len(CHROMATOGRAPHY_COLUMNS)] == CHROMATOGRAPHY_COLUMNS
    assert chrom["n_prompts"].max() == len(PROMPTS)
    ok = chrom.groupby("t_frac")["r_measured"].sum().dropna()
    np.testing.assert_allclose(ok[ok > 0], 1.0, rtol=1e-9)
    assert (wd / "results/logs/guidance_dump/oracle").is_dir()


def test_adding_a_prompt_replans_one_dump_job(smoke_run, tmp_path):
    """Adding one (odd) prompt plans one dump job (its own, or its shard's) and what is downstream."""
    three = tmp_path / "three.yaml"
    three.write_text(f"chromatography:\n  overrides:\n    oracle:\n      prompts: {json.dumps([*PROMPTS, ODD])}\n")
    jobs = plan(smoke_run.wd, *_targets(), *SMOKE, str(three))
    dumps = [j for j in jobs if j.rule.startswith("guidance_dump")]
    assert len(dumps) == 1, [(j.rule, j.outputs) for j in jobs]
    assert f"results/guidance/oracle/{prompt_id(ODD)}.parquet" in dumps[0].outputs
    others = {j.rule for j in jobs if j not in dumps}
    assert "aggregate_chromatography" in others and others <= DOWNSTREAM, others
    assert not (smoke_run.wd / f"results/guidance/oracle/{prompt_id(ODD)}.parquet").exists()
