"""Bad input caught when Snakemake plans, in one line: typed --config, CUDA, unwritable results/."""

from __future__ import annotations

import os

import pytest

from workflow_utils import copy_workflow, snakemake

pytestmark = [pytest.mark.workflow]


@pytest.fixture(scope="module")
def wd(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("cli") / "wf")


def _reschrom_lines(proc) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("reschrom:")]


def test_nested_config_override_is_typed_as_yaml(wd):
    proc = snakemake(
        wd, "-n", "results/theory/linear.parquet", "--configfile", "configs/smoke.yaml",
        "--config", "theory={n_t: 50, schedules: [linear]}",
    )
    assert "theory_table" in proc.stdout
    proc = snakemake(
        wd, "-n", "results/theory/linear.parquet", "--configfile", "configs/smoke.yaml",
        "--config", "theory={n_t: -5}", check=False,
    )
    assert proc.returncode != 0
    lines = _reschrom_lines(proc)
    assert len(lines) == 1 and "theory.n_t" in lines[0] and "-5" in lines[0], proc.stderr[-2000:]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_stops_before_any_job(wd):
    model = wd / "results/models/shapes/level_1"
    model.mkdir(parents=True, exist_ok=True)
    (model / "marker").write_text("finished model")
    proc = snakemake(
        wd, "results/theory/linear.parquet", "--cores", "1", "--configfile", "configs/smoke.yaml",
        "--config", "device=cuda", check=False,
    )
    assert proc.returncode != 0
    lines = _reschrom_lines(proc)
    assert len(lines) == 1 and "'device'" in lines[0] and "CUDA" in lines[0], proc.stderr[-2000:]
    assert (model / "marker").is_file()  # nothing removed
    assert not (wd / "results/theory/linear.parquet").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unwritable_results_is_one_line(wd):
    res = wd / "results"
    res.mkdir(exist_ok=True)
    res.chmod(0o555)
    try:
        proc = snakemake(wd, "-n", "--configfile", "configs/smoke.yaml", check=False)
    finally:
        res.chmod(0o755)
    assert proc.returncode != 0
    lines = _reschrom_lines(proc)
    assert len(lines) == 1 and "not writable" in lines[0], proc.stderr[-2000:]
