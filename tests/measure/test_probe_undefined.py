"""The probe says when it measures nothing (issue 23, item 4).

r̃ of eq. 19 is undefined where the CFG term g = ε_cond − ε_uncond vanishes: a prompt that names
nothing the model tells apart (on the oracle, a prompt naming none of its concepts: every step),
or the oracle once its concept posterior has chosen. Such steps are counted and said: a
``UndefinedStepsWarning`` with the count (``ProbeResult.relative``, every measured prompt, the
aggregation), a boolean ``defined`` in the dump rows, ``steps_defined``/``n_steps`` in the
aggregate and ``n_steps`` beside ``n_t`` in the agreement table.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reschrom.io import read_parquet, write_parquet
from reschrom.measure.aggregate import aggregate_chromatography, write_chromatography
from reschrom.measure.agreement import agreement_table
from reschrom.measure.guidance import GUIDANCE_COLUMNS, UNDEFINED_RATIO, UndefinedStepsWarning
from reschrom.measure.measurement import measure_guidance
from reschrom.measure.probe import GuidanceProbe
from reschrom.measure.prompts import prompt_id
from reschrom.models.oracle import build_oracle_pipeline

USER_MODELS = Path(__file__).resolve().parents[1] / "helpers" / "user_models"
NO_CONCEPT = "HD photo of a cute corgi"  # names none of the oracle's concepts
CONCEPTS = "a disc on grass"


@pytest.fixture(scope="module")
def oracle():
    return build_oracle_pipeline(16)


def _probe(pipe, prompt: str, steps: int = 12):
    with GuidanceProbe(pipe) as probe:
        pipe(prompt, guidance_scale=7.0, num_inference_steps=steps, num_images_per_prompt=2,
             generator=torch.Generator().manual_seed(0))
    return probe.result()


def _undefined_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, UndefinedStepsWarning)]


def test_a_prompt_naming_no_concept_measures_nothing_and_says_so(oracle):
    res = _probe(oracle, NO_CONCEPT)
    assert res.energies[:, 0].max() == 0.0  # the conditional model is the unconditional one
    assert res.defined().shape == (12, 2) and not res.defined().any() and res.num_defined == 0
    with pytest.warns(UndefinedStepsWarning) as rec:
        r = res.relative()
    (msg,) = _undefined_warnings(rec)
    assert "24 of 24 (step, sample) rows (12 of 12 steps for every sample)" in msg and "\n" not in msg
    assert r.shape == (12, 2, 5) and not r.any()


def test_a_prompt_naming_concepts_is_defined_early_and_counts_the_rest(oracle):
    res = _probe(oracle, CONCEPTS)
    d = res.defined()
    tot = res.energies.sum(-1)
    np.testing.assert_array_equal(d, tot[:, 0] > UNDEFINED_RATIO * tot[:, 1])
    assert d[0].all() and not d.all()  # g is nonzero at first and vanishes once the posterior has chosen
    with pytest.warns(UndefinedStepsWarning) as rec:
        r = res.relative()
    (msg,) = _undefined_warnings(rec)
    every = int((~d).all(1).sum())
    assert f"{int((~d).sum())} of 24 (step, sample) rows ({every} of 12 steps for every sample)" in msg
    np.testing.assert_allclose(r.sum(-1)[d], 1.0, rtol=1e-12)  # the README's "rows sum to 1 where defined"
    assert not r[~d].any()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedStepsWarning)
        res.relative(warn=False)
        res.relative("cond")  # ε_cond is never zero: no warning


def test_dumps_carry_defined_and_each_prompt_warns(oracle):
    with pytest.warns(UndefinedStepsWarning) as rec:
        df, results = measure_guidance(
            oracle, [NO_CONCEPT, CONCEPTS], model="oracle", seeds=[0, 1], num_samples=2,
            guidance_scale=7.0, num_inference_steps=12,
        )
    msgs = _undefined_warnings(rec)
    assert len(msgs) == 2
    assert msgs[0].startswith(f"model 'oracle', prompt {NO_CONCEPT!r}: the CFG term is zero at 48 of 48 ")
    assert msgs[1].startswith(f"model 'oracle', prompt {CONCEPTS!r}: ")
    assert list(df.columns[: len(GUIDANCE_COLUMNS)]) == GUIDANCE_COLUMNS  # added, never renamed
    assert df["defined"].dtype == bool
    # one value per (prompt, seed, sample, step), the probe's own, for every level m
    per = df.groupby(["prompt", "seed", "sample", "step"])["defined"].agg(["min", "max"])
    assert (per["min"] == per["max"]).all()
    assert not df.loc[df["prompt"] == NO_CONCEPT, "defined"].any()
    mine = df[(df["prompt"] == CONCEPTS) & (df["m"] == 0)].sort_values(["seed", "sample", "step"])
    expect = np.concatenate([results[2].defined().T.ravel(), results[3].defined().T.ravel()])
    np.testing.assert_array_equal(mine["defined"].to_numpy(), expect)
    m = re.search(r"zero at (\d+) of 48", msgs[1])
    assert m and int(m.group(1)) == int((~mine["defined"]).sum())


def test_aggregate_and_agreement_count_defined_steps(oracle, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedStepsWarning)
        df, _ = measure_guidance(
            oracle, [CONCEPTS, "clouds"], model="oracle", seeds=[0], num_samples=2,
            guidance_scale=7.0, num_inference_steps=12,
        )
    paths = []
    for pid, d in df.groupby("prompt_id"):
        paths.append(tmp_path / f"{pid}.parquet")
        write_parquet(d, paths[-1])
    # independently: a step has r̃ when some prompt's mean over its samples is defined there
    live = df[df["m"] == 0].groupby(["prompt_id", "step"])["defined"].any().groupby("step").any()
    expected = int(live.sum())
    assert 0 < expected < 12
    with pytest.warns(UndefinedStepsWarning, match=rf"r̃ \(eq. 19\) is defined at {expected} of 12 steps"):
        chrom = aggregate_chromatography(paths)
    assert (chrom["steps_defined"] == expected).all() and (chrom["n_steps"] == 12).all()
    assert chrom.columns[:7].tolist() == ["t_frac", "m", "resolution", "r_measured", "r_measured_std", "n_prompts", "r_theory"]
    agr = agreement_table(chrom, "oracle")
    assert (agr["n_t"] == expected).all() and (agr["n_steps"] == 12).all()
    with pytest.warns(UndefinedStepsWarning, match=rf"model 'oracle': r̃ \(eq. 19\) is defined at {expected} of 12"):
        write_chromatography(paths, tmp_path / "c.parquet", tmp_path / "a.parquet", model="oracle")
    assert read_parquet(tmp_path / "c.parquet")["steps_defined"].iloc[0] == expected
    assert read_parquet(tmp_path / "a.parquet")["n_steps"].iloc[0] == 12


def test_a_model_whose_guidance_never_vanishes_raises_no_warning(tmp_path):
    """The class-conditional user model: g ≠ 0 at every step, every row defined, no warning."""
    from reschrom.models.module import load_module_model

    try:
        m = load_module_model("mine", {"kind": "module", "path": str(USER_MODELS), "factory": "edm_classes:load"})
    finally:  # load_module_model put the folder on sys.path
        while str(USER_MODELS) in sys.path:
            sys.path.remove(str(USER_MODELS))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedStepsWarning)
        df, _ = measure_guidance(
            m, ["digit 3"], model="mine", seeds=[0], num_samples=2, guidance_scale=3.0, num_inference_steps=6
        )
        p = tmp_path / f"{prompt_id('digit 3')}.parquet"
        write_parquet(df, p)
        chrom = aggregate_chromatography([p])
    assert df["defined"].all()
    assert (chrom["steps_defined"] == 6).all() and (chrom["n_steps"] == 6).all()


def test_old_dumps_without_defined_still_aggregate(tmp_path):
    """Dumps written before the column existed aggregate as before (the column is extra)."""
    rows = [
        dict(model="syn", prompt_id="a", prompt="a", seed=0, sample=0, step=s, t=float(1 - s), t_frac=float(1 - s),
             m=m, resolution=2 ** (1 - m), energy_guidance=[1.0, 0.0][s], energy_cond=1.0, energy_uncond=1.0,
             alpha_bar=[0.1, 0.9][s])
        for s in range(2) for m in range(2)
    ]
    p = tmp_path / "a.parquet"
    write_parquet(pd.DataFrame(rows), p)
    with pytest.warns(UndefinedStepsWarning, match="defined at 1 of 2 steps"):
        chrom = aggregate_chromatography([p])
    assert chrom["steps_defined"].iloc[0] == 1 and chrom["n_steps"].iloc[0] == 2
