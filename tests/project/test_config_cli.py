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


def test_yaml_error_in_config_yaml_names_file_and_line(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    text = (wd / "config.yaml").read_text().replace("seed: 0", "seed: 0\ntheory_extra: {n_t: 50\nbroken: [", 1)
    (wd / "config.yaml").write_text(text)
    proc = snakemake(wd, "-n", check=False)
    assert proc.returncode != 0
    lines = _reschrom_lines(proc)
    assert len(lines) == 1 and "config.yaml:" in lines[0] and "YAML syntax error" in lines[0], proc.stderr[-2000:]
    line_no = int(lines[0].split("config.yaml:")[1].split(":")[0])
    assert text.splitlines()[line_no - 1].startswith(("theory_extra", "broken")), lines[0]


def test_config_checker_names_file_line_and_dotted_key(tmp_path, capsys):
    from pathlib import Path

    from reschrom.config import main

    root = Path(__file__).resolve().parents[2]
    bad = tmp_path / "my.yaml"
    bad.write_text("seed: 1\ntheory: {n_t: 50\nchromatography: []\n")
    assert main([str(bad), "--root", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{bad}:3:" in err, err
    assert main(["--root", str(root), "--config", "theory.n_t=50"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--config 'theory={n_t: 50}'" in err and err.count("\n") == 0, err
    good = tmp_path / "ok.yaml"
    good.write_text("theory: {n_t: 50}\n")
    assert main([str(good), "--root", str(root), "--config", "seed=3", "theory={n_t: 40}"]) == 0
    assert main([str(good), "--root", str(root), "--config", "theory={n_t: -5}"]) == 1
    assert "theory.n_t" in capsys.readouterr().err
