"""Hygiene: linters clean, every rule follows the conventions of CONTRIBUTING.md, and the committed
rule graph (docs/rulegraph.svg, shown in docs/cluster.md) is the workflow's current one.

Fixes: ``ruff check --fix src tests benchmarks``; ``snakefmt Snakefile rules`` (settings in
pyproject.toml); ``make rulegraph`` (needs graphviz).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_utils import REPO, copy_workflow, snakemake

BIN = Path(sys.executable).parent
GROUPS = {"default", "data", "train", "sample", "probe", "aggregate", "plot"}
RULE_FILES = sorted((REPO / "rules").glob("*.smk"))
# what a figure caption must cite: a paper figure, equation, theorem or section
PAPER_REF = re.compile(r"Fig\.|Figure|eq\.|Theorem|§")


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.skip(f"{name} is not installed")
        return found
    return str(path)


def _run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_ruff_clean():
    proc = _run(_tool("ruff"), "check", "src", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_snakefmt_clean():
    proc = _run(_tool("snakefmt"), "--check", "Snakefile", "rules")
    assert proc.returncode == 0, "run `snakefmt Snakefile rules`:\n" + (proc.stdout + proc.stderr)[-6000:]


def test_snakemake_lint_clean(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    proc = snakemake(wd, "--lint", check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-8000:]


def _rules() -> list[tuple[Path, str, str]]:
    """(file, rule name, rule body) for every rule in rules/*.smk."""
    found = []
    for path in RULE_FILES:
        text = path.read_text()
        heads = list(re.finditer(r"^(?:rule|checkpoint) (\w+):\n", text, re.M))
        for i, m in enumerate(heads):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            body = text[m.end() : end]
            # the rule ends at the first line back at column 0
            stop = re.search(r"^\S", body, re.M)
            found.append((path, m.group(1), body[: stop.start()] if stop else body))
    return found


def _use_rules() -> list[tuple[Path, str, str, str]]:
    """(file, rule name, base rule, `with:` block) for every `use rule <base> as <name> with:`."""
    found = []
    for path in RULE_FILES:
        text = path.read_text()
        for m in re.finditer(r"^use rule (\w+) as (\w+) with:\n", text, re.M):
            body = text[m.end() :]
            stop = re.search(r"^\S", body, re.M)
            found.append((path, m.group(2), m.group(1), body[: stop.start()] if stop else body))
    return found


def test_every_use_rule_names_its_own_log_and_benchmark():
    """A `use rule A as B with:` twin (rules/train.smk, compose.smk, report.smk) takes threads,
    resources, conda and script from A (checked above); its log: and, where A has one, its
    benchmark: must name B, or B's jobs would write into A's folders."""
    rules = {name: body for _, name, body in _rules()}
    uses = _use_rules()
    assert uses, "no `use rule … with:` found"
    problems = []
    for path, name, base, body in uses:
        where = f"{path.name}:{name}"
        if base not in rules:
            problems.append(f"{where}: its base rule {base} is not a rule of rules/*.smk")
            continue
        if not re.search(r"^    log:\n        \"results/logs/" + name + r"/", body, re.M):
            problems.append(f"{where}: needs its own log: in results/logs/{name}/")
        if "    benchmark:\n" in rules[base] and not re.search(
            r"^    benchmark:\n        \"results/benchmarks/" + name + r"/", body, re.M
        ):
            problems.append(f"{where}: needs its own benchmark: in results/benchmarks/{name}/")
    assert not problems, "\n".join(problems)


def test_every_rule_declares_threads_resources_log_conda():
    rules = _rules()
    assert rules, "no rules found"
    problems = []
    for path, name, body in rules:
        where = f"{path.name}:{name}"
        threads = re.search(r"^    threads: get_threads\(\"(\w+)\"\)$", body, re.M)
        resources = re.search(r"^    resources:\n        \*\*get_resources\(\"(\w+)\"\),\n", body, re.M)
        if not threads or not resources:
            problems.append(f"{where}: needs `threads: get_threads(group)` and `resources: **get_resources(group)`")
        elif threads.group(1) != resources.group(1) or threads.group(1) not in GROUPS:
            problems.append(f"{where}: threads/resources groups {threads.group(1)}/{resources.group(1)}")
        # the partition, account and GPU kind are the profile's business, never a rule's
        if re.search(r"slurm_partition|slurm_account|slurm_extra|gres|gpu_model|\bgpus?\s*=", body):
            problems.append(f"{where}: cluster settings belong in profiles/, not in the rule")
        if not re.search(r"^    log:\n        \"results/logs/" + name + r"/", body, re.M):
            problems.append(f"{where}: needs a log: in results/logs/{name}/")
        if "    conda:\n" not in body:
            problems.append(f"{where}: needs a conda: env")
    assert not problems, "\n".join(problems)


def test_every_figure_is_a_report_output_with_caption_category_labels():
    problems = []
    n = 0
    uses = [(path, name, body) for path, name, _, body in _use_rules()]
    for path, name, body in _rules() + uses:
        for m in re.finditer(r"report\((.*?)\n        \),", body, re.S):
            n += 1
            args = m.group(1)
            where = f"{path.name}:{name}"
            caption = re.search(r'caption="\.\./(report/[^"]+\.rst)"', args)
            if not caption:
                problems.append(f"{where}: report() without caption=\"../report/<name>.rst\"")
            elif not (REPO / caption.group(1)).exists():
                problems.append(f"{where}: {caption.group(1)} is missing")
            elif not PAPER_REF.search((REPO / caption.group(1)).read_text()):
                problems.append(f"{where}: {caption.group(1)} cites no paper figure/equation/section")
            category = re.search(r'category="([^"]+)"', args)
            if not category or not re.search(r"§|Fig\.", category.group(1)):
                problems.append(f"{where}: category must name the paper section (§ or Fig.)")
            labels = re.search(r"labels=\{(.*?)\}", args, re.S)
            if not labels or '"figure"' not in labels.group(1):
                problems.append(f"{where}: labels must include \"figure\"")
            elif not re.search(r'"(model|dataset|schedule)"', labels.group(1)):
                problems.append(f"{where}: labels must name the model, dataset or schedule")
        for png in re.findall(r'^        "(results/figures/[^"]+\.png)",$', body, re.M):
            problems.append(f"{path.name}:{name}: figure {png} is not a report(...) output")
    assert n > 0
    assert not problems, "\n".join(problems)


def _node_labels(text: str) -> set[str]:
    return set(re.findall(r'label = "(\w+)"', text))


def test_committed_rulegraph_is_current(tmp_path):
    committed = REPO / "docs/rulegraph.svg"
    assert committed.exists(), "docs/rulegraph.svg is missing: run `make rulegraph`"
    wd = copy_workflow(tmp_path / "wf")
    dot = snakemake(wd, "--rulegraph", timeout=300).stdout
    assert dot.lstrip().startswith("digraph"), dot[:500]
    rules = _node_labels(dot)
    shown = set(re.findall(r"<text[^>]*>(\w+)</text>", committed.read_text()))
    assert rules <= shown, f"docs/rulegraph.svg lacks {sorted(rules - shown)}: run `make rulegraph`"
    assert shown <= rules, f"docs/rulegraph.svg shows removed rules {sorted(shown - rules)}: run `make rulegraph`"
