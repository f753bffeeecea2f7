"""Prompt ids, guidance dumps, aggregation and agreement of the measured chromatography."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reschrom.io import read_parquet, write_parquet
from reschrom.measure.aggregate import (
    CHROMATOGRAPHY_COLUMNS,
    aggregate_chromatography,
    theory_for_alpha_bar,
    write_chromatography,
)
from reschrom.measure.agreement import agreement_table, jensen_shannon
from reschrom.measure.guidance import GUIDANCE_COLUMNS
from reschrom.measure.measurement import write_guidance_dump
from reschrom.measure.prompts import (
    PROMPT_ID_PATTERN,
    PromptFileError,
    prompt_id,
    read_prompt_table,
    read_prompts,
)

ODD = [
    "../../etc/passwd",
    "a/b/c",
    "..",
    "",
    "   ",
    'say "hi" and \'bye\'',
    "line one\nline two",
    "一只可爱的柯基犬的高清照片",
    "собака",
    "HD photo of a cute corgi",
    "hd photo of a cute corgi",
    "HD photo of a cute corgi ",
    "a" * 500,
    "tab\there",
    "émoji 🐶 café",
]


def test_odd_prompts_give_safe_distinct_ids():
    ids = [prompt_id(p) for p in ODD]
    assert len(set(ids)) == len(ODD)
    for i in ids:
        assert re.fullmatch(PROMPT_ID_PATTERN, i), i
        assert len(i) <= 51 and "/" not in i and ".." not in i
    assert prompt_id("HD photo of a cute corgi").startswith("hd-photo-of-a-cute-corgi-")
    assert prompt_id("émoji 🐶 café").startswith("emoji-cafe-")
    assert prompt_id("собака").startswith("prompt-")


def test_prompt_id_is_stable():
    assert prompt_id("a house floating on the air") == prompt_id("a house floating on the air")
    assert prompt_id("a house floating on the air") == "a-house-floating-on-the-air-" + __import__(
        "hashlib"
    ).sha256(b"a house floating on the air").hexdigest()[:10]


@given(st.text(max_size=200))
def test_prompt_id_property(text):
    pid = prompt_id(text)
    assert re.fullmatch(PROMPT_ID_PATTERN, pid)
    assert pid == prompt_id(text)


@given(st.text(max_size=50), st.text(max_size=50))
def test_distinct_texts_distinct_ids(a, b):
    if a != b:
        assert prompt_id(a) != prompt_id(b)


def test_read_prompts_tsv_and_list(tmp_path):
    p = tmp_path / "prompts.tsv"
    p.write_text('prompt\tnote\n# comment\t\na corgi\tx\n"two\nlines"\ty\na corgi\tdup\n', encoding="utf-8")
    assert read_prompts(p) == ["a corgi", "two\nlines"]
    assert read_prompts("prompts.tsv", base=tmp_path) == ["a corgi", "two\nlines"]
    q = tmp_path / "plain.txt"
    q.write_text("first prompt\nsecond prompt\n")
    assert read_prompts(q) == ["first prompt", "second prompt"]
    assert read_prompts(["b", "a", "b"]) == ["b", "a"]
    with pytest.raises(PromptFileError, match="missing.tsv"):
        read_prompts(tmp_path / "missing.tsv")


def test_prompt_files_csv_category_and_bad_input(tmp_path):
    c = tmp_path / "suite.csv"
    c.write_text('id,prompt,category\n1,"a red circle, striped",plain\n2,a blue square,textured\n', encoding="utf-8")
    table = read_prompt_table(c)
    assert list(table["prompt"]) == ["a red circle, striped", "a blue square"]
    assert list(table["category"]) == ["plain", "textured"]
    cases = {
        "noheader.tsv": ("text\tid\na corgi\t1\n", "no 'prompt' column"),
        "lines.csv": ("a corgi,1\na house,2\n", "no 'prompt' column"),
        "empty.tsv": ("", "no 'prompt' column"),
        "header_only.tsv": ("prompt\tcategory\n", "no prompt in it"),
        "blank_cat.tsv": ("prompt\tcategory\na corgi\t\n", "empty category"),
        "prompts.json": ('["a corgi"]', "unknown type .json"),
        "empty.txt": ("# only a comment\n\n", "no prompt in it"),
    }
    for name, (text, what) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(PromptFileError) as e:
            read_prompts(tmp_path / name)
        assert name in str(e.value) and what in str(e.value) and "\n" not in str(e.value), str(e.value)


# -- synthetic dumps ---------------------------------------------------------------------

ABAR = np.array([0.01, 0.5, 0.99])  # steps 0, 1, 2 (t_frac 1.0, 0.5, 0.0)


def _dump(path, pid, energies, cond=1.0):
    """energies: (samples, steps, M) of g; one prompt's dump in the contract."""
    B, S, M = energies.shape
    rows = []
    for b in range(B):
        for s in range(S):
            for m in range(M):
                rows.append(dict(model="syn", prompt_id=pid, prompt=pid, seed=0, sample=b, step=s,
                                 t=float(2 - s), t_frac=(2 - s) / 2, m=m, resolution=2 ** (M - 1 - m),
                                 energy_guidance=energies[b, s, m], energy_cond=cond, energy_uncond=cond,
                                 alpha_bar=ABAR[s]))
    df = pd.DataFrame(rows)
    assert set(GUIDANCE_COLUMNS) <= set(df.columns)
    write_parquet(df, path)
    return path


def test_aggregation_of_synthetic_dumps_gives_known_numbers(tmp_path):
    a = np.array([[[1, 1, 2], [1, 1, 2], [0, 0, 4]], [[1, 1, 2], [3, 1, 0], [0, 0, 4]]], float)
    b = np.array([[[2, 0, 2], [0, 0, 0], [1, 1, 2]]], float)  # step 1: g = 0 (undefined)
    pa = _dump(tmp_path / "a.parquet", "a", a)
    pb = _dump(tmp_path / "b.parquet", "b", b)
    out = aggregate_chromatography([pa, pb])
    assert list(out.columns[: len(CHROMATOGRAPHY_COLUMNS)]) == CHROMATOGRAPHY_COLUMNS
    piv = out.set_index(["t_frac", "m"])
    # t_frac 1 (step 0): prompt a → [.25,.25,.5]; prompt b → [.5, 0, .5]
    np.testing.assert_allclose(piv.loc[1.0, "r_measured"], [0.375, 0.125, 0.5])
    np.testing.assert_allclose(piv.loc[1.0, "r_measured_std"], np.std([[.25, .25, .5], [.5, 0, .5]], 0, ddof=1))
    assert (piv.loc[1.0, "n_prompts"] == 2).all()
    # t_frac 0.5 (step 1): a = mean([.25,.25,.5], [.75,.25,0]); b undefined
    np.testing.assert_allclose(piv.loc[0.5, "r_measured"], [0.5, 0.25, 0.25])
    assert (piv.loc[0.5, "n_prompts"] == 1).all() and (piv.loc[0.5, "r_measured_std"] == 0).all()
    # sums to one wherever defined; theory joined from ᾱ
    np.testing.assert_allclose(out.groupby("t_frac")["r_measured"].sum(), 1.0)
    for s, tf in enumerate([1.0, 0.5, 0.0]):
        np.testing.assert_allclose(piv.loc[tf, "r_theory"], theory_for_alpha_bar(ABAR[s : s + 1], 3)[0])


def test_aggregation_rejects_mismatched_grids(tmp_path):
    pa = _dump(tmp_path / "a.parquet", "a", np.ones((1, 3, 3)))
    pb = _dump(tmp_path / "b.parquet", "b", np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match="grid differs"):
        aggregate_chromatography([pa, pb])


def test_agreement_is_perfect_when_measured_equals_theory(tmp_path):
    ab = np.linspace(0.999, 0.001, 40)
    th = theory_for_alpha_bar(ab, 5)
    rows = [dict(t_frac=1 - i / 39, m=m, resolution=2 ** (4 - m), r_measured=th[i, m], r_theory=th[i, m])
            for i in range(40) for m in range(5)]
    df = pd.DataFrame(rows)
    agr = agreement_table(df, "x")
    np.testing.assert_allclose(agr["peak_t_diff"], 0.0)
    assert agr["spearman_peak_order"].iloc[0] == pytest.approx(1.0)
    assert agr["jsd_mean"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert (agr["n_t"] == 40).all()


@given(st.lists(st.floats(0.01, 10), min_size=2, max_size=6), st.integers(0, 1000))
def test_jensen_shannon_properties(p, seed):
    p = np.array(p)
    q = np.random.default_rng(seed).exponential(size=len(p))
    d = jensen_shannon(p, q)
    assert 0 <= d <= 1
    assert d == pytest.approx(jensen_shannon(q, p), abs=1e-12)
    assert jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-12)


def test_oracle_dump_and_aggregate_end_to_end(tmp_path):
    spec = dict(name="oracle", kind="oracle")
    settings = dict(resolution=8, guidance_scale=4.0, num_inference_steps=6, num_samples=2, seeds=[0, 1])
    paths = []
    for prompt in ["a disc", "clouds"]:
        p = tmp_path / f"{prompt_id(prompt)}.parquet"
        write_guidance_dump(spec, settings, prompt, p, model="oracle", device="cpu", threads=1)
        paths.append(p)
    d = read_parquet(paths[0])
    assert list(d.columns[: len(GUIDANCE_COLUMNS)]) == GUIDANCE_COLUMNS
    assert len(d) == 2 * 2 * 6 * 4 and set(d["seed"]) == {0, 1}
    write_chromatography(paths, tmp_path / "c.parquet", tmp_path / "a.parquet", model="oracle")
    c = read_parquet(tmp_path / "c.parquet")
    assert len(c) == 6 * 4
    agr = read_parquet(tmp_path / "a.parquet")
    assert len(agr) == 4 and agr["jsd_mean"].between(0, 1).all()
