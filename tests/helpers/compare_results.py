"""Are two runs' tables the same? ``python tests/helpers/compare_results.py OLD_WORKDIR NEW_WORKDIR``

Compares every ``results/**/*.parquet`` that both runs wrote (checkpoints excluded) on the columns
both tables have (a release may add columns, never rename or drop one), with ``DataFrame.equals``
(exact: NaN equals NaN); the timing column ``images_per_s`` is ignored. ``--old-pair-ids`` maps
the compose folders and ``pair_id`` column of a run made before pair ids became
``prompt_id(texture, structure)`` (slug + 8 hex of SHA-1 of ``structure + NUL + texture``).
Prints the tables only one run has, every differing table with its largest difference per
column, and a count; exits 1 when a common table differs.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def old_pair_id(structure: str, texture: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", texture.lower()).strip("-")[:40].rstrip("-") or "prompt"
    return f"{slug}-{hashlib.sha1((structure + chr(0) + texture).encode()).hexdigest()[:8]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--old-pair-ids", action="store_true", help="OLD names compose pairs by the SHA-1 scheme")
    args = ap.parse_args(argv)
    base, new = args.old / "results", args.new / "results"
    mapping: dict[str, str] = {}
    if args.old_pair_ids:
        from reschrom.compose.pairs import pair_id

        for f in base.rglob("compose/*/metrics.parquet"):
            for s, x in pd.read_parquet(f)[["structure", "texture"]].drop_duplicates().itertuples(index=False):
                mapping[old_pair_id(s, x)] = pair_id(s, x)

    def tables(root: Path, remap: bool) -> dict[Path, Path]:
        out = {}
        for p in root.rglob("*.parquet"):
            rel = p.relative_to(root)
            if "checkpoints" not in rel.parts:
                out[Path(*[mapping.get(q, q) for q in rel.parts]) if remap else rel] = p
        return out

    old, cur = tables(base, True), tables(new, False)
    for name, only in ((args.old, set(old) - set(cur)), (args.new, set(cur) - set(old))):
        listed = sorted(map(str, only))
        print(f"only in {name}: {len(listed)} table(s) {listed[:10]}{' …' if len(listed) > 10 else ''}")
    equal, differ = 0, 0
    for key in sorted(set(old) & set(cur)):
        a, b = pd.read_parquet(old[key]), pd.read_parquet(cur[key])
        if "pair_id" in a:
            a["pair_id"] = a["pair_id"].map(lambda v: mapping.get(v, v))
        cols = [c for c in a.columns if c in b.columns and c != "images_per_s"]
        a, b = a[cols].reset_index(drop=True), b[cols].reset_index(drop=True)
        if a.equals(b):
            equal += 1
            continue
        differ += 1
        if a.shape != b.shape:
            print(f"DIFFERENT {key}: shape {a.shape} against {b.shape}")
            continue
        notes = []
        for c in cols:
            if a[c].equals(b[c]):
                continue
            if pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c]):
                d = np.nanmax(np.abs(a[c].to_numpy(float) - b[c].to_numpy(float)))
                notes.append(f"{c} max|Δ| {d:.3g}")
            else:
                notes.append(f"{c} differs")
        print(f"DIFFERENT {key}: {'; '.join(notes)}")
    print(f"{equal} common tables exactly equal on their common columns, {differ} different")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
