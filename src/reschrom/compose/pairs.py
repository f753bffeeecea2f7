"""Prompt pairs of the composing experiments (§4.3): ids, η labels, expansion from the config.

Torch-free on purpose: the workflow calls these while it builds the DAG (output file names),
where no model may be loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reschrom.measure.prompts import prompt_id


def pair_id(structure: str, texture: str) -> str:
    """A safe, stable id of a prompt pair: :func:`reschrom.measure.prompts.prompt_id` of
    (texture, structure), the slug of the texture prompt and 10 hex of a hash of both."""
    return prompt_id(texture, structure)


def sweep_etas(etas: Sequence[float]) -> list[float]:
    """The η values a sweep renders: the configured ones plus the references 0 and 1, descending."""
    return sorted({float(e) for e in etas} | {0.0, 1.0}, reverse=True)


def eta_label(eta: float) -> str:
    """File-name form of η (``eta_{label}.png``): Python's repr of the float, e.g. 0.8, 1.0."""
    return str(float(eta))


def expand_pairs(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    """The prompt pairs of a model's config entry, without loading anything.

    ``pairs``: explicit ``{structure, texture}`` dicts; ``templates``: ``{structure, texture,
    subjects}`` with ``{}`` in each template replaced by every subject (paper: "A HD photo of {}"
    → "An oil painting of {}"). Both may be given; duplicates are dropped, order kept.
    """
    out: list[dict[str, str]] = []
    for p in spec.get("pairs", []) or []:
        out.append({"structure": str(p["structure"]), "texture": str(p["texture"])})
    tpl = spec.get("templates")
    if tpl:
        for subj in tpl.get("subjects", []):
            out.append(
                {
                    "structure": str(tpl["structure"]).replace("{}", str(subj)),
                    "texture": str(tpl["texture"]).replace("{}", str(subj)),
                }
            )
    seen: set[tuple[str, str]] = set()
    uniq = []
    for p in out:
        key = (p["structure"], p["texture"])
        if key not in seen:
            seen.add(key)
            uniq.append(p)
    return uniq


def pair_ids(spec: Mapping[str, Any]) -> list[str]:
    """:func:`pair_id` of every pair of :func:`expand_pairs` (for Snakemake's output lists)."""
    return [pair_id(p["structure"], p["texture"]) for p in expand_pairs(spec)]


def find_pair(spec: Mapping[str, Any], pid: str) -> dict[str, str]:
    """The pair of a model's config entry whose :func:`pair_id` is ``pid``."""
    for p in expand_pairs(spec):
        if pair_id(p["structure"], p["texture"]) == pid:
            return p
    raise ValueError(f"prompt pair {pid!r} is not configured; configured: {', '.join(pair_ids(spec))}")


COMPOSE_COLUMNS = [
    "model",
    "pair_id",
    "structure",
    "texture",
    "weighting",
    "eta",
    "seed",
    "m",
    "resolution",
    "energy_vs_structure",
    "energy_vs_texture",
    "share_vs_structure",
    "share_vs_texture",
]
"""``results/compose/{model}/metrics.parquet``: one row per (pair, η, level m). ``energy_vs_*``
is the band energy ‖(x_η - x_ref)^(m)‖² (eq. 19, images in [0, 1], summed over channels and
pixels) of the composed image's difference from the pure structure-prompt image (η = 0) and from
the pure texture-prompt image (η = 1); ``share_vs_*`` the same normalised over levels."""


def aggregate_compose(metrics_in: Sequence[str], metrics_out: str) -> None:
    """Concatenate the per-pair metrics of one model into ``results/compose/{model}/metrics.parquet``."""
    import pandas as pd

    from reschrom.io import read_parquet, write_parquet

    df = pd.concat([read_parquet(p) for p in metrics_in], ignore_index=True)
    write_parquet(df[COMPOSE_COLUMNS], metrics_out)
