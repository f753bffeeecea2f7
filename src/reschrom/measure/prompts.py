"""Prompts and shards: ids, prompt files and the shards of a model's measurement.

* :func:`prompt_id` gives every prompt text a stable, file-name-safe id (a readable slug plus a
  hash of the exact text); :func:`read_prompts` reads a list or a prompts file,
  :func:`read_prompt_suite` the same with ids and categories.
* :func:`assign_shards` groups a model's prompts into jobs of at most ``shard_size`` prompts by a
  stable hash trie of their ids, so that adding a prompt changes one shard only.

Runs at DAG-planning time (``rules/helpers/chromatography.smk``): standard library, NumPy and
pandas only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

PROMPT_ID_PATTERN = r"[a-z0-9]+(?:-[a-z0-9]+)*"
"""Every prompt id matches this (a Snakemake wildcard constraint)."""


def prompt_id(text: str, *more: str, max_slug: int = 40) -> str:
    """A stable, safe file name for a prompt, or for a tuple of prompts: ``<slug>-<10 hex of sha256>``.

    The one id function of the project: guidance dumps are named by ``prompt_id(prompt)``,
    composing pairs by ``prompt_id(texture, structure)``
    (:func:`reschrom.compose.pairs.pair_id`). The slug is the first text transliterated to
    ASCII (NFKD), lower-cased, with every run of other characters replaced by one ``-`` and cut
    to ``max_slug`` characters ("prompt" if nothing is left, e.g. for non-Latin scripts). The
    hash covers the exact UTF-8 text (of several texts: their JSON list, so no two tuples share
    it), so distinct texts get distinct ids (up to a 2^-40 collision chance) and '/', '..',
    quotes and newlines can never reach a path.
    """
    s = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", s).strip("-")[:max_slug].strip("-") or "prompt"
    hashed = json.dumps([str(t) for t in (text, *more)], ensure_ascii=False) if more else str(text)
    digest = hashlib.sha256(hashed.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


class PromptFileError(ValueError):
    """A prompts file that cannot be read as prompts; the message is one line naming the file."""


PROMPT_FILE_SUFFIXES = (".tsv", ".csv", ".txt")


def read_prompt_table(path: str | os.PathLike) -> pd.DataFrame:
    """A prompts file as a table with a ``prompt`` column (and ``category`` when present).

    ``.tsv`` and ``.csv``: a header row naming a ``prompt`` column (case-insensitive; an optional
    ``category`` column), fields parsed with Python's csv module (quoted fields may hold the
    separator and newlines); ``.txt``: one prompt per line. Lines starting with ``#`` and blank
    prompts are skipped; order is kept, duplicates dropped (the first wins). Anything else, a
    missing ``prompt`` column, a blank category or no prompt at all raise
    :class:`PromptFileError` with one line naming the file.
    """
    p = Path(path)
    if not p.is_file():
        raise PromptFileError(f"prompt file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in PROMPT_FILE_SUFFIXES:
        raise PromptFileError(f"prompt file {p}: unknown type {suffix or '(none)'}; use .tsv or .csv with a 'prompt' column, or .txt")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PromptFileError(f"prompt file {p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if suffix == ".txt":
        rows = [ln.strip() for ln in text.splitlines()]
        df = pd.DataFrame({"prompt": [r for r in rows if r and not r.startswith("#")]})
    else:
        delim = "\t" if suffix == ".tsv" else ","
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delim) if r and not r[0].startswith("#")]
        header = [h.strip().lower() for h in rows[0]] if rows else []
        if "prompt" not in header:
            raise PromptFileError(
                f"prompt file {p}: its header {rows[0] if rows else '(empty file)'} has no 'prompt' column"
            )
        cols = {"prompt": header.index("prompt")}
        if "category" in header:
            cols["category"] = header.index("category")
        recs = []
        for i, r in enumerate(rows[1:], start=2):
            rec = {k: (r[j].strip() if k == "category" else r[j]) if j < len(r) else "" for k, j in cols.items()}
            if not rec["prompt"].strip():
                continue
            if "category" in rec and not rec["category"]:
                raise PromptFileError(f"prompt file {p}: row {i} ({rec['prompt'][:40]!r}) has an empty category")
            recs.append(rec)
        df = pd.DataFrame(recs, columns=list(cols))
    df = df.drop_duplicates("prompt", keep="first").reset_index(drop=True)
    if df.empty:
        raise PromptFileError(f"prompt file {p}: no prompt in it")
    return df


def read_prompts(spec: str | os.PathLike | Sequence[str], base: str | os.PathLike | None = None) -> list[str]:
    """Prompts from a list, or from a prompts file (:func:`read_prompt_table`; a relative path
    is taken relative to ``base`` if given). Order is kept, duplicates dropped."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if base is not None and not p.is_absolute():
            p = Path(base) / p
        return list(read_prompt_table(p)["prompt"])
    return list(dict.fromkeys(str(t) for t in spec))


def prompt_ids(texts: Iterable[str]) -> dict[str, str]:
    """{prompt_id: prompt} for a list of prompts (in order)."""
    return {prompt_id(t): t for t in texts}


DEFAULT_CATEGORY = "all"
"""The category of prompts given without one (a list, a .txt file, a table without a
``category`` column)."""


def read_prompt_suite(spec: str | os.PathLike | Sequence[str], base: str | os.PathLike | None = None) -> pd.DataFrame:
    """Prompts with their ids and categories: columns ``prompt_id``, ``prompt``, ``category``
    (:data:`DEFAULT_CATEGORY` where the source has none), in order, duplicates dropped."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec)
        if base is not None and not p.is_absolute():
            p = Path(base) / p
        df = read_prompt_table(p)
    else:
        df = pd.DataFrame({"prompt": list(dict.fromkeys(str(t) for t in spec))})
    if "category" not in df:
        df["category"] = DEFAULT_CATEGORY
    df.insert(0, "prompt_id", [prompt_id(t) for t in df["prompt"]])
    return df[["prompt_id", "prompt", "category"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------
# shards: which prompts one job measures
# --------------------------------------------------------------------------------------

SHARD_PATTERN = r"s[01]*"
"""Every shard label matches this."""

_SHARD_MAX_DEPTH = 64


def shard_bits(pid: str) -> str:
    """The first 64 bits of sha256(prompt id) as a string of 0/1: the prompt's path in the shard trie."""
    h = hashlib.sha256(str(pid).encode("utf-8")).digest()[:8]
    return format(int.from_bytes(h, "big"), "064b")


def assign_shards(ids: Iterable[str], shard_size: int) -> dict[str, list[str]]:
    """Prompts grouped into shards of at most ``shard_size`` prompts, by a rule that depends on
    each prompt and the set, never on positions or on how many prompts there are.

    The shards are the leaves of a binary trie over the hash bits of each prompt id
    (:func:`shard_bits`): a node holding more than ``shard_size`` prompts splits by the next
    bit, a node holding at most ``shard_size`` is a shard, labelled ``s`` + its bit prefix
    (``s`` alone: every prompt in one shard). Hence adding one prompt changes the prompt set of
    exactly one shard, the one whose prefix it falls under (or creates a new shard where no
    prompt was); only when that shard was already full does it split into its children, which
    together hold exactly its old prompts and the new one. In both cases the dumps that rerun
    are those of one old shard. Removing a prompt likewise touches one shard (or merges a full
    parent back). With hashing, a shard holds between ~shard_size/2 and shard_size prompts on
    average (about 0.7·shard_size). Within a shard, prompts keep their input order.
    """
    size = int(shard_size)
    if size < 1:
        raise ValueError(f"shard_size must be >= 1, got {size}")
    ids = list(dict.fromkeys(ids))
    bits = {i: shard_bits(i) for i in ids}
    out: dict[str, list[str]] = {}

    def split(prefix: str, members: list[str]) -> None:
        if len(members) <= size or len(prefix) >= _SHARD_MAX_DEPTH:
            out["s" + prefix] = members
            return
        d = len(prefix)
        for b in "01":
            sub = [i for i in members if bits[i][d] == b]
            if sub:
                split(prefix + b, sub)

    if ids:
        split("", ids)
    return dict(sorted(out.items()))
