"""Acceptance test of the model work: a network that is not ours, with its own parameterisation
(x0-prediction, σ-parameterised EDM, class labels, 12×12 one-channel), goes through the workflow
by the `kind: module` contract alone: dump → aggregate → agreement → figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from reschrom.measure.aggregate import CHROMATOGRAPHY_COLUMNS
from reschrom.measure.guidance import GUIDANCE_COLUMNS
from reschrom.measure.prompts import prompt_id
from workflow_utils import broken_module_config, copy_workflow, snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

USER_MODELS = Path(__file__).resolve().parents[1] / "helpers" / "user_models"


def _targets(model: str) -> list[str]:
    return [
        f"results/chromatography/{model}.parquet",
        f"results/chromatography/{model}_agreement.parquet",
        f"results/figures/chromatography_{model}.png",
        f"results/figures/chromatography_prompts_{model}.png",
        f"results/compose/{model}/metrics.parquet",
        f"results/figures/x0_spectra_{model}.png",
    ]


def test_user_module_model_end_to_end(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "mine.yaml").write_text(
        "models:\n"
        f"  mine: {{kind: module, path: '{USER_MODELS}', factory: 'edm_classes:load'}}\n"
        "chromatography:\n"
        "  measure: [mine]\n"
        "  overrides:\n"
        "    mine: {prompts: ['digit 3', 'digit 5'], num_inference_steps: 12, num_samples: 2, guidance_scale: 3.0}\n"
        "compose:\n"
        "  run: [mine]\n"
        "  overrides:\n"
        "    mine: {pairs: [{structure: 'digit 3', texture: 'digit 5'}], num_inference_steps: 8}\n"
        "spectra:\n"
        "  run: [mine]\n"
        "  overrides:\n"
        "    mine: {prompts: ['digit 1'], num_inference_steps: 8}\n"
    )
    snakemake(wd, *_targets("mine"), "--cores", "2", "--configfile", "configs/smoke.yaml", "mine.yaml")
    for t in _targets("mine"):
        assert (wd / t).stat().st_size > 0, t
    dump = pq.read_table(wd / f"results/guidance/mine/{prompt_id('digit 3')}.parquet").to_pandas()
    assert list(dump.columns)[: len(GUIDANCE_COLUMNS)] == GUIDANCE_COLUMNS
    assert sorted(dump["resolution"].unique()) == [3, 6, 12]  # 12 = 3·2²: levels 12, 6, 3
    assert dump["step"].nunique() == 12 and dump["sample"].nunique() == 2
    # t is the model's own time: σ of its EDM schedule, decreasing; ᾱ = 1/(1+σ²)
    per_step = dump.groupby("step")[["t", "t_frac", "alpha_bar"]].first()
    assert np.all(np.diff(per_step["t"]) < 0) and per_step["t"].iloc[0] > 10
    np.testing.assert_allclose(per_step["alpha_bar"], 1 / (1 + per_step["t"] ** 2), rtol=1e-6)
    chrom = pq.read_table(wd / "results/chromatography/mine.parquet").to_pandas()
    assert list(chrom.columns)[: len(CHROMATOGRAPHY_COLUMNS)] == CHROMATOGRAPHY_COLUMNS
    sums = chrom.groupby("t_frac")["r_measured"].sum().dropna()
    np.testing.assert_allclose(sums[sums > 0], 1.0, rtol=1e-9)
    np.testing.assert_allclose(chrom.groupby("t_frac")["r_theory"].sum(), 1.0, rtol=1e-9)


def test_broken_module_model_fails_in_one_line_and_writes_nothing(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "broken.yaml").write_text(broken_module_config(tmp_path, "compose: {run: []}\nspectra: {run: []}\n"))
    dump = f"results/guidance/bad/{prompt_id('digit 3')}.parquet"
    proc = snakemake(wd, dump, "--cores", "1", "--configfile", "configs/smoke.yaml", "broken.yaml", check=False)
    assert proc.returncode != 0
    assert not (wd / dump).exists()
    log = next((wd / "results/logs/guidance_dump/bad").glob("*.log")).read_text()
    last = [ln for ln in log.splitlines() if ln.strip()][-1]
    assert "'bad'" in last and "broken:load" in last and "shape" in last, last
    # a factory that does not exist is caught when Snakemake plans, before any job
    (wd / "missing.yaml").write_text(
        "models:\n"
        f"  bad: {{kind: module, path: '{tmp_path / 'user'}', factory: 'broken:nope'}}\n"
    )
    proc = snakemake(wd, "-n", "--configfile", "configs/smoke.yaml", "broken.yaml", "missing.yaml", check=False)
    assert proc.returncode != 0
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("reschrom:")]
    assert len(err) == 1 and "broken:nope" in err[0] and "nope" in err[0], proc.stderr[-2000:]
