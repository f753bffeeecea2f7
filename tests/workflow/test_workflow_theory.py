"""The theory stage of the workflow (the session's smoke run), and one-line config errors."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from reschrom.theory.resolution import THEORY_COLUMNS
from workflow_utils import SMOKE, copy_workflow, snakemake

pytestmark = pytest.mark.workflow

# configs/smoke.yaml: theory.schedules [linear, flow_matching], n_t 50, resolution 16
TARGETS = [
    "results/theory/linear.parquet",
    "results/theory/flow_matching.parquet",
    "results/figures/chromatography_theory_linear.png",
    "results/figures/time_adjustment_flow_matching.png",
    "results/figures/chromatography_atlas.png",
]


def test_theory_targets_and_contract(smoke_run):
    wd = smoke_run.wd
    for t in TARGETS:
        assert (wd / t).stat().st_size > 0, t
    tab = pq.read_table(wd / "results/theory/linear.parquet").to_pandas()
    assert list(tab.columns)[: len(THEORY_COLUMNS)] == THEORY_COLUMNS
    assert len(tab) == 50 * 5  # smoke: n_t = 50, resolution 16 → 5 levels
    np.testing.assert_allclose(tab.groupby("t_frac")["r"].sum(), 1.0, atol=1e-12)
    fm = pq.read_table(wd / "results/theory/flow_matching.parquet").to_pandas()
    assert fm["t"].between(0, 1).all()  # σ is flow matching's own time
    assert (wd / "results/logs/theory_table/linear.log").exists()
    assert (wd / "results/benchmarks/theory_table/linear.tsv").exists()
    # a second run plans nothing
    proc = snakemake(wd, *TARGETS, "-n", *SMOKE)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "override,expected",
    [
        ("kernel: 3", "config key 'kernel': 3 is not allowed; allowed values: 2"),
        ("resolution: 3", "config key 'resolution': 3 has a single level (not divisible by 2)"),
        ("bogus_key: 1", "config key 'bogus_key' is unknown"),
        ("theory: {schedules: [nope]}", "config key 'theory.schedules': 'nope' is not defined"),
        ("theory: {n_t: -5}", "config key 'theory.n_t': -5 is out of range"),
        ("schedules: {x: {type: warp}}", "config key 'schedules.x.type': 'warp' is not allowed; allowed values: ddpm"),
        ("seed: abc", "config key 'seed': 'abc' has the wrong type"),
    ],
)
def test_bad_config_stops_with_one_line(tmp_path, override, expected):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "bad.yaml").write_text(override + "\n")
    proc = snakemake(wd, "-n", "--configfile", "configs/smoke.yaml", "bad.yaml", check=False)
    assert proc.returncode != 0
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("reschrom:")]
    assert len(err_lines) == 1 and expected in err_lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (wd / "results").exists()
