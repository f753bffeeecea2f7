"""The measured-chromatography stage of the workflow (oracle only), in a temporary copy."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from reschrom.chromatography import CHROMATOGRAPHY_COLUMNS, prompt_id
from reschrom.probe import GUIDANCE_COLUMNS
from workflow_utils import copy_workflow, snakemake

pytestmark = pytest.mark.workflow

ODD = 'a "disc"/../ on grass\nnewline'


def _targets():
    return [
        "results/chromatography/oracle.parquet",
        "results/chromatography/oracle_agreement.parquet",
        "results/figures/chromatography_oracle.png",
        "results/figures/chromatography_prompts_oracle.png",
    ]


def _jobs(out: str) -> dict[str, int]:
    stats = out.split("Job stats:")[1].split("total")[0] if "Job stats:" in out else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def test_oracle_chromatography_and_incremental_prompt(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "two.yaml").write_text(
        "chromatography:\n  overrides:\n    oracle:\n      num_inference_steps: 4\n"
        "      prompts: ['a disc', 'grass']\n"
    )
    snakemake(wd, *_targets(), "--cores", "1", "--configfile", "configs/smoke.yaml", "two.yaml")
    for t in _targets():
        assert (wd / t).stat().st_size > 0, t
    dump = pq.read_table(wd / f"results/guidance/oracle/{prompt_id('a disc')}.parquet").to_pandas()
    assert list(dump.columns)[: len(GUIDANCE_COLUMNS)] == GUIDANCE_COLUMNS
    chrom = pq.read_table(wd / "results/chromatography/oracle.parquet").to_pandas()
    assert list(chrom.columns)[: len(CHROMATOGRAPHY_COLUMNS)] == CHROMATOGRAPHY_COLUMNS
    ok = chrom.groupby("t_frac")["r_measured"].sum().dropna()
    np.testing.assert_allclose(ok[ok > 0], 1.0, rtol=1e-9)
    assert (wd / "results/logs/guidance_dump/oracle").is_dir()
    # adding one (odd) prompt plans only its dump and what is downstream
    (wd / "three.yaml").write_text(
        "chromatography:\n  overrides:\n    oracle:\n      num_inference_steps: 4\n"
        f"      prompts: ['a disc', 'grass', {json.dumps(ODD)}]\n"
    )
    proc = snakemake(wd, *_targets(), "-n", "--configfile", "configs/smoke.yaml", "three.yaml")
    jobs = _jobs(proc.stdout)
    assert jobs.get("guidance_dump") == 1, proc.stdout
    assert set(jobs) == {"guidance_dump", "aggregate_chromatography", "plot_measured_chromatography",
                         "plot_prompt_chromatography"}, jobs
    assert f"results/guidance/oracle/{prompt_id(ODD)}.parquet" in proc.stdout
