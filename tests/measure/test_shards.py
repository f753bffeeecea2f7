"""Prompt suites at scale: stable shards, batched measurement, bootstrap intervals, categories."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from builders import build_tiny_if_pipeline
from reschrom.io import read_parquet, write_parquet
from reschrom.measure.aggregate import (
    CATEGORY_COLUMNS,
    CHROMATOGRAPHY_COLUMNS,
    INTERVAL_COLUMNS,
    aggregate_chromatography,
    category_table,
    chromatography_from_stack,
    stack_prompt_tables,
    write_chromatography,
)
from reschrom.measure.agreement import AGREEMENT_INTERVALS, agreement_table
from reschrom.measure.guidance import GUIDANCE_COLUMNS
from reschrom.measure.measurement import measure_guidance, prompt_generators
from reschrom.measure.probe import GuidanceProbe
from reschrom.measure.prompts import DEFAULT_CATEGORY, assign_shards, prompt_id, read_prompt_suite
from rounding import assert_equal_up_to_rounding
from workflow_utils import REPO, copy_workflow, plan, snakemake

# -- stable shards ------------------------------------------------------------------------

ids_strategy = st.lists(st.text(min_size=1, max_size=12), min_size=0, max_size=60, unique=True)


def _as_sets(shards):
    return {k: frozenset(v) for k, v in shards.items()}


@given(ids_strategy, st.text(min_size=1, max_size=12), st.integers(1, 9))
def test_adding_a_prompt_changes_one_shard(texts, new, size):
    ids = [prompt_id(t) for t in texts]
    x = prompt_id(new)
    if x in ids:
        return
    old = _as_sets(assign_shards(ids, size))
    got = _as_sets(assign_shards([*ids, x], size))
    # every shard holds at most shard_size prompts (hash collisions aside), together all of them
    assert all(len(v) <= size for v in got.values())
    assert frozenset().union(*got.values()) == frozenset([*ids, x])
    changed_new = {k: v for k, v in got.items() if old.get(k) != v}
    changed_old = {k: v for k, v in old.items() if got.get(k) != v}
    # the changed shards hold exactly one old shard's prompts (or none) and the new prompt
    assert len(changed_old) <= 1
    assert frozenset().union(*changed_new.values()) == frozenset().union(*changed_old.values(), {x})
    if not changed_old or len(next(iter(changed_old.values()))) < size:
        assert len(changed_new) == 1  # the common case: exactly one shard job
    else:
        # a full shard splits into shards under its own prefix
        (label,) = changed_old
        assert all(k.startswith(label) for k in changed_new)


@given(ids_strategy, st.integers(1, 9), st.randoms(use_true_random=False))
def test_shards_do_not_depend_on_order(texts, size, rnd):
    ids = [prompt_id(t) for t in texts]
    shuffled = list(ids)
    rnd.shuffle(shuffled)
    assert _as_sets(assign_shards(ids, size)) == _as_sets(assign_shards(shuffled, size))


def test_shards_of_the_shapes_suite():
    suite = read_prompt_suite(REPO / "data/prompts/shapes_suite.tsv")
    assert len(suite) >= 200 and set(suite.columns) == {"prompt_id", "prompt", "category"}
    shards = assign_shards(suite["prompt_id"], 64)
    sizes = [len(v) for v in shards.values()]
    assert max(sizes) <= 64 and sum(sizes) == len(suite) and np.mean(sizes) > 20
    with pytest.raises(ValueError, match="shard_size"):
        assign_shards(suite["prompt_id"], 0)


# -- batched measurement ------------------------------------------------------------------

PROMPTS = ["a red circle", "a blue square with stripes", "a green triangle", "a cute corgi photo"]
KW = dict(model="tiny", seeds=[0, 3], num_samples=2, guidance_scale=4.0, num_inference_steps=4)


@pytest.fixture(scope="module")
def if_pipe():
    return build_tiny_if_pipeline(resolution=8, seed=0)


def _by_prompt(df):
    return {p: d.sort_values(["seed", "sample", "step", "m"]).reset_index(drop=True) for p, d in df.groupby("prompt")}


def _assert_same_dumps(batched, alone):
    a, b = _by_prompt(batched), _by_prompt(alone)
    assert a.keys() == b.keys()
    for p in a:
        assert list(a[p].columns[: len(GUIDANCE_COLUMNS)]) == GUIDANCE_COLUMNS
        for c in ("seed", "sample", "step", "m", "t", "t_frac", "resolution", "prompt_id"):
            assert (a[p][c] == b[p][c]).all(), (p, c)
        # batched vs alone: other kernels, equal up to float32 rounding of ε (tests/helpers/rounding.py). The
        # energies are squared norms of the bands of ε_c, ε_u and g = ε_c − ε_u: an error δ in ε moves
        # ‖g^(m)‖² by at most 2‖g‖·δ ≤ 4(‖ε_c‖² + ‖ε_u‖²)·(δ/‖ε‖), so the scale is that sum per step.
        per_step = b[p].groupby(["seed", "sample", "step"])[["energy_cond", "energy_uncond"]].transform("sum")
        scale = 4 * (per_step["energy_cond"] + per_step["energy_uncond"]).to_numpy()
        for c in ("energy_guidance", "energy_cond", "energy_uncond"):
            assert_equal_up_to_rounding(a[p][c].to_numpy(), b[p][c].to_numpy(), scale_of=(scale,), msg=f"{p} {c}")


def test_batched_dumps_equal_single_prompt_dumps_pipeline(if_pipe):
    batched, res = measure_guidance(if_pipe, PROMPTS, batch_prompts=3, **KW)  # batches of 3 and 1
    alone = pd.concat([measure_guidance(if_pipe, p, batch_prompts=1, **KW)[0] for p in PROMPTS])
    _assert_same_dumps(batched, alone)
    assert len(res) == len(PROMPTS) * 2 and all(r.num_samples == 2 for r in res)
    # the order of prompts in the table is the input order
    assert list(dict.fromkeys(batched["prompt"])) == PROMPTS


def test_probed_batched_call_leaves_images_bitwise_unchanged(if_pipe):
    n = 2

    def call():
        return if_pipe(PROMPTS[:3], num_inference_steps=3, guidance_scale=4.0, num_images_per_prompt=n,
                       generator=prompt_generators(3, 5, n), output_type="pt", clean_caption=False).images

    plain = call()
    with GuidanceProbe(if_pipe) as probe:
        probed = call()
    assert torch.equal(plain, probed)
    assert probe.result().num_samples == 3 * n
    # each prompt's noise is its own: the first prompt's images alone equal its rows in the batch
    alone = if_pipe(PROMPTS[:1], num_inference_steps=3, guidance_scale=4.0, num_images_per_prompt=n,
                    generator=prompt_generators(1, 5, n), output_type="pt", clean_caption=False).images
    # (alone vs in a batch of three: other BLAS kernels, so equal up to float32 rounding, not bitwise)
    assert_equal_up_to_rounding(alone, plain[:n])


def test_batched_dumps_equal_single_prompt_dumps_oracle():
    from reschrom.models.oracle import build_oracle_pipeline

    pipe = build_oracle_pipeline(resolution=8, device="cpu")
    prompts = ["a disc", "grass", "clouds"]
    kw = dict(KW, model="oracle")
    batched, _ = measure_guidance(pipe, prompts, batch_prompts=8, **kw)
    alone = pd.concat([measure_guidance(pipe, p, **kw)[0] for p in prompts])
    _assert_same_dumps(batched, alone)


def test_batched_dumps_equal_single_prompt_dumps_denoiser():
    from reschrom.models.builders import build_flow_t2i, build_word_tokenizer
    from reschrom.models.module import ModuleModel

    torch.manual_seed(0)
    cfg = {"block_out_channels": [8, 16], "attention": [False, True], "norm_num_groups": 4,
           "text_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32}, "shift": 3.0}
    obj = build_flow_t2i(build_word_tokenizer(PROMPTS), cfg, sample_size=8)
    den = ModuleModel.from_object("flow", obj, device="cpu", dtype=torch.float32)
    batched, _ = measure_guidance(den, PROMPTS, batch_prompts=3, **KW)
    alone = pd.concat([measure_guidance(den, p, batch_prompts=1, **KW)[0] for p in PROMPTS])
    _assert_same_dumps(batched, alone)


def test_shard_writer_writes_each_prompt_dump(tmp_path):
    from reschrom.measure.measurement import write_guidance_shard

    spec = {"name": "oracle", "kind": "oracle"}
    settings = {"resolution": 8, "guidance_scale": 3.0, "num_inference_steps": 3, "num_samples": 1, "seeds": [0],
                "batch_prompts": 2}
    prompts = {prompt_id(p): p for p in ["a disc", "grass", "marble"]}
    outs = [tmp_path / f"{i}.parquet" for i in prompts]
    write_guidance_shard(spec, settings, prompts, outs, model="oracle", device="cpu", threads=1)
    for (pid, text), out in zip(prompts.items(), outs):
        d = read_parquet(out)
        assert set(d["prompt_id"]) == {pid} and set(d["prompt"]) == {text}
    with pytest.raises(ValueError, match="outputs and prompts differ"):
        write_guidance_shard(spec, settings, prompts, outs[:2], model="oracle", device="cpu")


# -- bootstrap intervals and categories ---------------------------------------------------

ABAR = np.linspace(0.02, 0.98, 6)


def _dump(path, pid, r, rng):
    """A synthetic dump whose band energies follow ``r`` (steps, M) times noise, 2 samples."""
    S, M = r.shape
    rows = []
    for b in range(2):
        e = r * rng.uniform(0.5, 1.5, size=r.shape)
        for s in range(S):
            for m in range(M):
                rows.append(dict(model="syn", prompt_id=pid, prompt=pid, seed=0, sample=b, step=s, t=float(S - 1 - s),
                                 t_frac=(S - 1 - s) / (S - 1), m=m, resolution=2 ** (M - 1 - m),
                                 energy_guidance=e[s, m], energy_cond=1.0, energy_uncond=1.0, alpha_bar=ABAR[s]))
    write_parquet(pd.DataFrame(rows), path)
    return path


def _suite(tmp_path, n, seed=0, M=3):
    rng = np.random.default_rng(seed)
    paths, cats = [], {}
    for i in range(n):
        base = rng.dirichlet(np.ones(M), size=len(ABAR))
        pid = f"p{i}"
        paths.append(_dump(tmp_path / f"{pid}.parquet", pid, base, rng))
        cats[pid] = ["plain", "textured"][i % 2]
    return paths, cats


def test_bootstrap_intervals_contain_the_mean(tmp_path):
    paths, _ = _suite(tmp_path, 12)
    out = aggregate_chromatography(paths, n_boot=200, seed=0)
    assert list(out.columns[: len(CHROMATOGRAPHY_COLUMNS)]) == CHROMATOGRAPHY_COLUMNS
    assert set(INTERVAL_COLUMNS) <= set(out.columns)
    assert out[INTERVAL_COLUMNS].notna().all().all()
    assert (out["r_measured_lo"] <= out["r_measured"]).all() and (out["r_measured"] <= out["r_measured_hi"]).all()
    assert (out["r_measured_hi"] > out["r_measured_lo"]).any()
    # the interval narrows roughly like std/sqrt(n): 95 % ≈ ±1.96·std/√12
    width = (out["r_measured_hi"] - out["r_measured_lo"]) / (2 * 1.96 * out["r_measured_std"] / np.sqrt(12))
    assert 0.5 < float(width.median()) < 1.5
    # seeded: the same seed gives the same interval, another seed another one
    again = aggregate_chromatography(paths, n_boot=200, seed=0)
    pd.testing.assert_frame_equal(out, again)
    other = aggregate_chromatography(paths, n_boot=200, seed=1)
    assert not np.allclose(out["r_measured_lo"], other["r_measured_lo"])
    # without resamples: the same table, intervals NaN
    plain = aggregate_chromatography(paths)
    pd.testing.assert_frame_equal(plain.drop(columns=INTERVAL_COLUMNS), out.drop(columns=INTERVAL_COLUMNS))
    assert plain[INTERVAL_COLUMNS].isna().all().all()


def test_agreement_intervals(tmp_path):
    paths, _ = _suite(tmp_path, 10)
    chrom, boot = chromatography_from_stack(stack_prompt_tables(paths), n_boot=100, seed=0)
    agr = agreement_table(chrom, "syn", boot)
    for k in AGREEMENT_INTERVALS:
        lo, hi, est = agr[f"{k}_lo"], agr[f"{k}_hi"], agr[k]
        ok = est.notna()
        assert ((lo <= est) & (est <= hi))[ok].all(), k
    assert agr[["jsd_mean_lo", "jsd_mean_hi", "jsd_max_lo", "jsd_max_hi"]].notna().all().all()
    # without replicates: the same estimates (the table of before), NaN intervals
    plain = agreement_table(chrom, "syn")
    pd.testing.assert_frame_equal(plain[agr.columns[:10]], agr[agr.columns[:10]])
    assert plain[[f"{k}_lo" for k in AGREEMENT_INTERVALS]].isna().all().all()


def test_one_prompt_gives_nan_intervals_without_error(tmp_path):
    paths, cats = _suite(tmp_path, 1)
    write_chromatography(paths, tmp_path / "c.parquet", tmp_path / "a.parquet", "syn",
                         categories_out=tmp_path / "k.parquet", categories=cats, n_boot=200, seed=0)
    c, a, k = (read_parquet(tmp_path / f) for f in ("c.parquet", "a.parquet", "k.parquet"))
    assert c[INTERVAL_COLUMNS].isna().all().all() and c["r_measured"].notna().all()
    assert a[[f"{m}_lo" for m in AGREEMENT_INTERVALS]].isna().all().all()
    assert list(k["category"].unique()) == ["plain"]


def test_category_aggregation_equals_aggregating_each_category(tmp_path):
    paths, cats = _suite(tmp_path, 9)
    stack = stack_prompt_tables(paths)
    table = category_table(stack, cats, n_boot=50, seed=0)
    assert list(table.columns[: len(CATEGORY_COLUMNS)]) == CATEGORY_COLUMNS
    assert list(table["category"].unique()) == ["plain", "textured"]
    for c in ("plain", "textured"):
        mine = [p for p, pid in zip(paths, [f"p{i}" for i in range(9)]) if cats[pid] == c]
        ref = aggregate_chromatography(mine)
        got = table[table["category"] == c].reset_index(drop=True)
        np.testing.assert_allclose(got["r_measured"], ref["r_measured"])
        np.testing.assert_allclose(got["r_measured_std"], ref["r_measured_std"])
        assert (got["n_prompts"] == len(mine)).all()
        np.testing.assert_allclose(got["r_theory"], ref["r_theory"])
        assert (got["r_measured_lo"] <= got["r_measured"]).all() and (got["r_measured"] <= got["r_measured_hi"]).all()
    # a category's interval does not depend on the other categories (its own seeded stream)
    only = category_table(stack.subset([i for i in range(9) if i % 2 == 0]), cats, n_boot=50, seed=0)
    np.testing.assert_allclose(only["r_measured_lo"], table[table["category"] == "plain"]["r_measured_lo"])
    # no categories: one category, "all"
    assert set(category_table(stack)["category"]) == {DEFAULT_CATEGORY}


def test_category_figure(tmp_path):
    from reschrom.plots.categories import plot_category_chromatography

    paths, cats = _suite(tmp_path, 6)
    table = category_table(stack_prompt_tables(paths), cats, n_boot=20, seed=0)
    write_parquet(table, tmp_path / "k.parquet")
    plot_category_chromatography(tmp_path / "k.parquet", tmp_path / "k.png", model="syn", dpi=40)
    assert (tmp_path / "k.png").stat().st_size > 1000


# -- the workflow ---------------------------------------------------------------------------

ORACLE_PROMPTS = ["a disc", "grass", "clouds"]  # two shards of size 2, one with room (each shard job pays the imports)


def _prompt_yaml(prompts, size=2):
    return (
        "chromatography:\n  n_boot: 20\n  overrides:\n    oracle:\n      num_inference_steps: 3\n"
        f"      resolution: 8\n      shard_size: {size}\n      batch_prompts: 2\n"
        f"      prompts: {json.dumps(prompts)}\n"
    )


def _targets(model="oracle"):
    return [f"results/chromatography/{model}.parquet", f"results/figures/chromatography_categories_{model}.png"]


@pytest.mark.workflow
def test_adding_a_prompt_plans_one_shard_job(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "p.yaml").write_text(_prompt_yaml(ORACLE_PROMPTS))
    cfg = ["--configfile", "configs/smoke.yaml", "p.yaml"]
    jobs = plan(wd, *_targets(), *cfg)
    shards = [j for j in jobs if j.rule.startswith("guidance_dump_oracle_")]
    assert len(shards) == len(assign_shards([prompt_id(p) for p in ORACLE_PROMPTS], 2)) > 1
    snakemake(wd, *_targets(), "--cores", "2", *cfg)
    chrom = read_parquet(wd / "results/chromatography/oracle.parquet")
    assert set(INTERVAL_COLUMNS) <= set(chrom.columns)
    cats = read_parquet(wd / "results/chromatography/oracle_categories.parquet")
    assert list(cats.columns[: len(CATEGORY_COLUMNS)]) == CATEGORY_COLUMNS
    assert plan(wd, *_targets(), *cfg) == []
    # a new prompt whose shard has room: exactly one shard job, then what depends on it
    ids = [prompt_id(p) for p in ORACLE_PROMPTS]
    old = _as_sets(assign_shards(ids, 2))
    room = [c for c in (f"a disc number {i}" for i in range(200))
            if len(_as_sets(assign_shards([*ids, prompt_id(c)], 2)).keys() - old.keys()) == 0
            and sum(old.get(k) != v for k, v in _as_sets(assign_shards([*ids, prompt_id(c)], 2)).items()) == 1]
    assert room, "no candidate prompt lands in a shard with room"
    (wd / "q.yaml").write_text(_prompt_yaml([*ORACLE_PROMPTS, room[0]]))
    jobs = plan(wd, *_targets(), "--configfile", "configs/smoke.yaml", "q.yaml")
    rules = sorted(j.rule for j in jobs)
    shard_jobs = [j for j in jobs if j.rule.startswith("guidance_dump_")]
    assert len(shard_jobs) == 1, rules
    assert f"results/guidance/oracle/{prompt_id(room[0])}.parquet" in shard_jobs[0].outputs
    assert set(rules) - {shard_jobs[0].rule} == {"aggregate_chromatography", "plot_chromatography_categories"}, rules


@pytest.mark.workflow
@pytest.mark.parametrize(
    "yaml_text, fragment",
    [
        ("chromatography: {shard_size: 0}\n", "config key 'chromatography.shard_size': 0 is out of range"),
        ("chromatography: {batch_prompts: 0}\n", "config key 'chromatography.batch_prompts': 0 is out of range"),
        ("chromatography: {overrides: {oracle: {batch_prompts: -1}}}\n",
         "config key 'chromatography.overrides.oracle.batch_prompts'"),
        ("chromatography: {prompts: bad.tsv}\n", "config key 'chromatography.prompts': prompt file"),
    ],
)
def test_bad_shard_settings_and_categories_stop_at_dag_time(tmp_path, yaml_text, fragment):
    wd = copy_workflow(tmp_path / "wf")
    (wd / "bad.tsv").write_text("prompt\tcategory\na red circle\tplain\na blue square\t\n", encoding="utf-8")
    (wd / "bad.yaml").write_text(yaml_text)
    proc = snakemake(wd, "-n", "--configfile", "configs/smoke.yaml", "bad.yaml", check=False, timeout=300)
    assert proc.returncode != 0
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("reschrom:")]
    assert len(err) == 1 and fragment in err[0], proc.stderr[-2000:]
    if "prompt file" in fragment:
        assert "empty category" in err[0] and "row 3" in err[0]
    assert not (wd / "results").exists()
