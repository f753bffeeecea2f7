"""Size the ``resources:`` block of a config from a finished run's benchmarks.

Every computing rule writes ``results/benchmarks/<rule>/….tsv`` (Snakemake's ``benchmark:``: the
wall time ``s`` and the peak memory ``max_rss``/``max_pss`` in MB of the job's processes). Rules
take their memory and time from a resource group, ``get_resources("<group>")`` in ``rules/*.smk``.
This command takes, per group, the largest job of the run and prints a ``resources:`` block that
holds it on a cluster::

    mem_mb  = ceil(max over the group's jobs of max(max_rss, max_pss) × margin + overhead_mb)
    runtime = max(1, ceil(max over the group's jobs of s × margin / 60))      (minutes)

``overhead_mb`` is what the Snakemake processes around each cluster job take beside it (the
benchmark measures the job's own processes only). ``threads``, ``gpu`` and any other key of a
group are kept from the current config; groups the run did not measure are printed unchanged.

    python -m reschrom.resources                       # results/benchmarks, rules/, config.yaml
    python -m reschrom.resources --config config.yaml --config configs/paper.yaml --no-shrink
    python -m reschrom.resources --check --margin 1.2  # exit 1 if a request is below the sizing

Size from a run at the scale you will submit (a smoke run's peaks say little about paper scale).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MARGIN = 1.5
DEFAULT_OVERHEAD_MB = 300
_RULE = re.compile(
    r"^[ \t]*(?:(?:rule|checkpoint)(?:[ \t]+(\w+))?[ \t]*:|use[ \t]+rule[ \t]+(\w+)[ \t]+as[ \t]+(\w+)\b)", re.M
)
_GROUP = re.compile(r"""get_resources\(\s*["'](\w+)["']\s*\)""")
_BENCH_DIR = re.compile(r"""results/benchmarks/([\w.-]+)/""")


@dataclass
class GroupUsage:
    """The measured peaks of one resource group: the largest job's memory (MB) and time (s)."""

    peak_mb: float = 0.0
    peak_s: float = 0.0
    jobs: int = 0
    rules: set[str] = field(default_factory=set)


def rule_groups(rules_dir: str | Path) -> dict[str, str]:
    """{rule: resource group} from ``get_resources("<group>")`` of each rule in ``rules_dir/*.smk``
    (and a ``Snakefile`` beside it); a rule without one runs in ``default``. A ``use rule A as B
    with:`` rule runs in A's group unless its ``with:`` block names its own. The folder of a rule's
    ``benchmark:`` below results/benchmarks maps to its group too (rules made in a loop have no
    name in the source, only that folder)."""
    rules_dir = Path(rules_dir)
    files = sorted(rules_dir.glob("*.smk"))
    if (rules_dir.parent / "Snakefile").is_file():
        files.append(rules_dir.parent / "Snakefile")
    groups: dict[str, str] = {}
    uses: dict[str, tuple[str, str | None, str | None]] = {}  # name: (base, own group, benchmark folder)
    for path in files:
        text = path.read_text()
        starts = list(_RULE.finditer(text))
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            g = _GROUP.search(text, m.end(), end)
            b = _BENCH_DIR.search(text, m.end(), end)
            if m.group(3):  # use rule <base> as <name>: resolved below (the base may come later)
                uses[m.group(3)] = (m.group(2), g.group(1) if g else None, b.group(1) if b else None)
                continue
            group = g.group(1) if g else "default"
            if b:
                groups.setdefault(b.group(1), group)
            if m.group(1):
                groups[m.group(1)] = group

    def group_of(name: str, seen: frozenset[str] = frozenset()) -> str:
        if name in uses and name not in seen:  # a use rule: its own group, else its base's
            base, own, _ = uses[name]
            return own or group_of(base, seen | {name})
        return groups.get(name, "default")

    resolved = {name: group_of(name) for name in uses}
    for name, (_, _, bench) in uses.items():
        if bench:
            groups.setdefault(bench, resolved[name])
    groups.update(resolved)
    return groups


def _number(value: str | None) -> float | None:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None  # "NA": the job ended before the first sample
    return x if math.isfinite(x) else None


def read_benchmarks(bench_dir: str | Path) -> list[tuple[str, Path, dict[str, float | None]]]:
    """(rule, file, row) for every row of every ``bench_dir/<rule>/**/*.tsv`` (the rule is the first
    folder below ``bench_dir``); numbers as floats, ``NA`` as None."""
    bench_dir = Path(bench_dir)
    out = []
    for path in sorted(bench_dir.rglob("*.tsv")):
        rel = path.relative_to(bench_dir)
        if len(rel.parts) < 2:
            continue  # not below a rule's folder
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                out.append((rel.parts[0], path, {k: _number(v) for k, v in row.items() if k}))
    return out


def measure(
    rows: Iterable[tuple[str, Path, Mapping[str, float | None]]], groups: Mapping[str, str]
) -> dict[str, GroupUsage]:
    """Per resource group: the peak of max(max_rss, max_pss) and of s over its jobs."""
    usage: dict[str, GroupUsage] = {}
    for rule, _path, row in rows:
        u = usage.setdefault(groups.get(rule, "default"), GroupUsage())
        mem = [v for v in (row.get("max_rss"), row.get("max_pss")) if v is not None]
        u.peak_mb = max([u.peak_mb, *mem])
        u.peak_s = max(u.peak_s, row.get("s") or 0.0)
        u.jobs += 1
        u.rules.add(rule)
    return usage


def size_group(usage: GroupUsage, margin: float = DEFAULT_MARGIN, overhead_mb: float = DEFAULT_OVERHEAD_MB) -> dict:
    """{mem_mb, runtime} that hold the group's largest measured job."""
    return {
        "mem_mb": math.ceil(usage.peak_mb * margin + overhead_mb),
        "runtime": max(1, math.ceil(usage.peak_s * margin / 60)),
    }


def merged_resources(config_files: Sequence[str | Path]) -> dict[str, dict]:
    """The ``resources`` of several config files merged group by group, later files winning (as
    Snakemake merges ``--configfile``s)."""
    import yaml

    out: dict[str, dict] = {}
    for f in config_files:
        res = (yaml.safe_load(Path(f).read_text()) or {}).get("resources") or {}
        for group, entry in res.items():
            out[group] = {**out.get(group, {}), **(entry or {})}
    return out


def sized_resources(
    current: Mapping[str, Mapping[str, Any]],
    usage: Mapping[str, GroupUsage],
    margin: float = DEFAULT_MARGIN,
    overhead_mb: float = DEFAULT_OVERHEAD_MB,
    shrink: bool = True,
) -> dict[str, dict]:
    """The new ``resources`` block: each measured group sized, every other key of it (threads, gpu,
    …) kept from ``current`` (or from ``current['default']`` for a group it does not list)."""
    default = dict(current.get("default", {}))
    out: dict[str, dict] = {}
    for group in [*current, *sorted(g for g in usage if g not in current)]:
        entry = dict(current.get(group, {"threads": default.get("threads", 1), "gpu": default.get("gpu", 0)}))
        if group in usage:
            new = size_group(usage[group], margin, overhead_mb)
            if not shrink:
                base = {**default, **current.get(group, {})}
                new = {k: max(v, int(base.get(k, 0) or 0)) for k, v in new.items()}
            entry.update(new)
        out[group] = entry
    return out


def _flow(entry: Mapping[str, Any]) -> str:
    order = ["threads", "mem_mb", "runtime", "gpu"]
    keys = [k for k in order if k in entry] + [k for k in entry if k not in order]
    return "{" + ", ".join(f"{k}: {entry[k]}" for k in keys) + "}"


def format_block(resources: Mapping[str, Mapping[str, Any]], usage: Mapping[str, GroupUsage], header: str = "") -> str:
    """``resources:`` as YAML, one flow mapping per group, the measured peaks as comments."""
    lines = [f"# {ln}" for ln in header.splitlines()] + ["resources:"]
    for group, entry in resources.items():
        u = usage.get(group)
        note = (
            f"  # peak {u.peak_mb:.0f} MB, {u.peak_s:.0f} s over {u.jobs} job(s): {', '.join(sorted(u.rules))}"
            if u
            else "  # not measured: kept"
        )
        lines.append(f"  {group}: {_flow(entry)}{note}")
    return "\n".join(lines) + "\n"


def check(
    current: Mapping[str, Mapping[str, Any]],
    usage: Mapping[str, GroupUsage],
    margin: float,
    overhead_mb: float,
) -> list[str]:
    """Groups whose current request (with ``default`` filled in) is below the sizing: one line each."""
    default = dict(current.get("default", {}))
    short = []
    for group, u in sorted(usage.items()):
        have = {**default, **current.get(group, {})}
        need = size_group(u, margin, overhead_mb)
        for key, val in need.items():
            if int(have.get(key, 0) or 0) < val:
                short.append(
                    f"resources.{group}.{key}: {have.get(key)} < {val} "
                    f"(peak {u.peak_mb:.0f} MB / {u.peak_s:.0f} s of {', '.join(sorted(u.rules))})"
                )
    return short


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m reschrom.resources",
        description="Print a resources: block sized from a run's benchmarks (results/benchmarks/<rule>/*.tsv).",
    )
    p.add_argument("--benchmarks", default="results/benchmarks", help="benchmark folder of a finished run")
    p.add_argument("--rules", default="rules", help="folder of the workflow's *.smk (rule → resource group)")
    p.add_argument(
        "--config",
        action="append",
        help="config file(s) whose resources to keep threads/gpu from, merged in order (default: config.yaml)",
    )
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="factor on the measured peaks")
    p.add_argument(
        "--overhead-mb", type=float, default=DEFAULT_OVERHEAD_MB, help="MB added for Snakemake around each job"
    )
    p.add_argument("--no-shrink", action="store_true", help="never print less than the current request")
    p.add_argument("--check", action="store_true", help="only check the current requests; exit 1 if one is short")
    args = p.parse_args(argv)

    bench = Path(args.benchmarks)
    if not bench.is_dir():
        p.error(f"{bench}: no such folder (run the workflow first, or pass --benchmarks)")
    configs = args.config or (["config.yaml"] if Path("config.yaml").is_file() else [])
    current = merged_resources(configs)
    rows = read_benchmarks(bench)
    if not rows:
        p.error(f"{bench}: no benchmark files below it")
    usage = measure(rows, rule_groups(args.rules))
    if args.check:
        short = check(current, usage, args.margin, args.overhead_mb)
        for line in short:
            print(line)
        if not short:
            print(f"every group of {', '.join(configs) or '(no config)'} holds its measured peak")
        return 1 if short else 0
    new = sized_resources(current, usage, args.margin, args.overhead_mb, shrink=not args.no_shrink)
    header = (
        f"sized from {len(rows)} benchmark(s) in {bench}: mem_mb = ceil(peak MB × {args.margin:g} + "
        f"{args.overhead_mb:g}), runtime = ceil(peak s × {args.margin:g} / 60) min"
    )
    sys.stdout.write(format_block(new, usage, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
