"""reschrom.resources: a resources: block sized from a run's benchmark TSVs (synthetic, in tmp)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reschrom import resources as R

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"

RULES = {
    "a.smk": """
rule train_a:
    output:
        "x",
    benchmark:
        "results/benchmarks/train_a/{m}.tsv"
    threads: get_threads("train")
    resources:
        **get_resources("train"),
    script:
        "../scripts/a.py"


rule table:
    output:
        "t",
    resources:
        **get_resources("default"),
    shell:
        "touch {output}"
""",
    "b.smk": """
checkpoint sample_b:
    output:
        "y",
    resources:
        **get_resources('sample'),
    shell:
        "touch {output}"


rule no_resources:
    output:
        "z",
    shell:
        "touch {output}"


for _name in ["dump_a", "dump_b"]:

    rule:
        name:
            _name
        output:
            f"d/{_name}",
        benchmark:
            f"results/benchmarks/dump/{_name}.tsv"
        threads: get_threads("probe")
        resources:
            **get_resources("probe"),
        shell:
            "touch {output}"
""",
}


def _bench(root, rule: str, name: str, *rows: tuple[str, str, str]) -> None:
    """rows of (s, max_rss, max_pss)."""
    path = root / "results" / "benchmarks" / rule / name
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{s}\t0:00:01\t{rss}\t900.0\t80.0\t{pss}\t0.0\t0.0\t50.0\t1.0\n" for s, rss, pss in rows)
    path.write_text(HEADER + body)


@pytest.fixture
def run(tmp_path):
    (tmp_path / "rules").mkdir()
    for name, text in RULES.items():
        (tmp_path / "rules" / name).write_text(text)
    _bench(tmp_path, "train_a", "shapes_lowres.tsv", ("100.0", "400.0", "380.0"))
    _bench(tmp_path, "train_a", "nested/shapes_toy.tsv", ("30.5", "600.0", "650.0"), ("10.0", "500.0", "500.0"))
    _bench(tmp_path, "table", "linear.tsv", ("0.5", "NA", "NA"))  # ended before the first sample
    _bench(tmp_path, "sample_b", "full.tsv", ("7000.0", "1000.0", "900.0"))
    _bench(tmp_path, "no_resources", "z.tsv", ("2.0", "50.0", "60.0"))
    _bench(tmp_path, "dump", "dump_a.tsv", ("3.0", "700.0", "710.0"))
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": {
                    "default": {"threads": 1, "mem_mb": 2000, "runtime": 20, "gpu": 0},
                    "train": {"threads": 8, "mem_mb": 3000, "runtime": 60, "gpu": 1},
                    "plot": {"threads": 1, "mem_mb": 700, "runtime": 5, "gpu": 0},
                }
            },
            sort_keys=False,
        )
    )
    return tmp_path


def test_rule_groups_from_get_resources(run):
    assert R.rule_groups(run / "rules") == {
        "train_a": "train",  # also its benchmark folder's name
        "table": "default",
        "sample_b": "sample",
        "no_resources": "default",
        "dump": "probe",  # the benchmark folder of rules made in a loop
    }


def test_measure_takes_the_largest_job_of_each_group(run):
    usage = R.measure(R.read_benchmarks(run / "results/benchmarks"), R.rule_groups(run / "rules"))
    assert set(usage) == {"train", "default", "sample", "probe"}
    assert usage["probe"].peak_mb == 710.0 and usage["probe"].rules == {"dump"}
    assert usage["train"].peak_mb == 650.0 and usage["train"].peak_s == 100.0 and usage["train"].jobs == 3
    assert usage["default"].peak_mb == 60.0 and usage["default"].peak_s == 2.0  # NA rows count as no memory
    assert usage["default"].rules == {"table", "no_resources"}
    assert usage["sample"].peak_mb == 1000.0


USE_RULES = {
    "a.smk": """
rule table:
    output:
        "t",
    resources:
        **get_resources("default"),
    shell:
        "touch {output}"


use rule train_a as train_b with:
    benchmark:
        "results/benchmarks/train_b/{m}.tsv"


use rule train_b as train_c with:
    output:
        "c",


use rule train_a as plot_d with:
    benchmark:
        "results/benchmarks/plot_d/{m}.tsv"
    resources:
        **get_resources("plot"),
""",
    "b.smk": """
rule train_a:
    output:
        "x",
    benchmark:
        "results/benchmarks/train_a/{m}.tsv"
    threads: get_threads("train")
    resources:
        **get_resources("train"),
    script:
        "../scripts/a.py"
""",
}


def test_use_rule_runs_in_its_base_group_unless_it_names_one(tmp_path):
    """`use rule A as B with:` (rules/train.smk, compose.smk, report.smk) takes A's group, also
    when A is defined in a later file or B is the base of another; a `with:` block that names a
    group wins; B's benchmark folder counts in B's group, not in the rule written above it."""
    (tmp_path / "rules").mkdir()
    for name, text in USE_RULES.items():
        (tmp_path / "rules" / name).write_text(text)
    groups = R.rule_groups(tmp_path / "rules")
    assert groups == {
        "table": "default",
        "train_a": "train",
        "train_b": "train",
        "train_c": "train",
        "plot_d": "plot",
    }
    _bench(tmp_path, "train_b", "x.tsv", ("40.0", "900.0", "900.0"))
    usage = R.measure(R.read_benchmarks(tmp_path / "results/benchmarks"), groups)
    assert set(usage) == {"train"} and usage["train"].peak_mb == 900.0


def test_workflow_use_rules_keep_their_groups():
    """The `use rule` twins of the workflow run in their base's group (their benchmarks size it)."""
    groups = R.rule_groups(Path(__file__).resolve().parents[2] / "rules")
    assert groups["train_residual"] == groups["train_t2i"] == groups["train_lowres"] == "train"
    assert groups["plot_compose_pairs"] == "plot"
    assert groups["table_compose_shares"] == "aggregate"


def test_sizing_formula_and_kept_keys(run):
    usage = R.measure(R.read_benchmarks(run / "results/benchmarks"), R.rule_groups(run / "rules"))
    current = R.merged_resources([run / "config.yaml"])
    new = R.sized_resources(current, usage, margin=1.5, overhead_mb=300)
    assert new["train"] == {"threads": 8, "gpu": 1, "mem_mb": math.ceil(650 * 1.5 + 300), "runtime": 3}
    assert new["default"] == {"threads": 1, "gpu": 0, "mem_mb": 390, "runtime": 1}  # min 1 minute
    # a measured group the config does not list: threads and gpu of default
    assert new["sample"] == {"threads": 1, "gpu": 0, "mem_mb": 1800, "runtime": 175}
    assert new["plot"] == current["plot"]  # not measured: unchanged
    keep = R.sized_resources(current, usage, margin=1.5, overhead_mb=300, shrink=False)
    assert keep["default"]["mem_mb"] == 2000 and keep["train"]["runtime"] == 60
    assert keep["train"]["mem_mb"] == 3000 and keep["sample"]["mem_mb"] == 2000  # default's 2000 ≥ 1800


def test_check_lists_short_requests(run):
    usage = R.measure(R.read_benchmarks(run / "results/benchmarks"), R.rule_groups(run / "rules"))
    current = R.merged_resources([run / "config.yaml"])
    short = R.check(current, usage, margin=1.2, overhead_mb=300)
    # sample falls back to default (2000 MB, 20 min): 1000 × 1.2 + 300 MB fits, 7000 s × 1.2 does not
    assert short == [next(s for s in short if s.startswith("resources.sample.runtime: 20 < 140"))]


def test_cli_prints_a_valid_resources_block(run):
    proc = subprocess.run(
        [sys.executable, "-m", "reschrom.resources", "--margin", "2", "--overhead-mb", "100"],
        cwd=run, capture_output=True, text=True, check=True,
    )  # fmt: skip
    block = yaml.safe_load(proc.stdout)["resources"]
    assert block["train"] == {"threads": 8, "mem_mb": 1400, "runtime": 4, "gpu": 1}
    assert list(block) == ["default", "train", "plot", "probe", "sample"]
    assert "peak 650 MB" in proc.stdout and "not measured" in proc.stdout
    chk = subprocess.run(
        [sys.executable, "-m", "reschrom.resources", "--check"], cwd=run, capture_output=True, text=True
    )
    assert chk.returncode == 1 and "resources.sample.runtime" in chk.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "reschrom.resources", "--benchmarks", "nope"], cwd=run, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such folder" in missing.stderr
