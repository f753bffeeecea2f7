"""Time-dependent prompt composing (§4.3, eq. 6, 25): weights, hooks, bitwise references, costs."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reschrom import compose
from reschrom.compose.composer import PromptComposer
from reschrom.compose.pairs import expand_pairs, pair_id, sweep_etas
from reschrom.compose.weights import (
    band_weights,
    heaviside_weights,
    linear_weights,
    make_weights,
    sigmoid_weights,
)
from reschrom.measure.prompts import PROMPT_ID_PATTERN, prompt_id
from reschrom.theory.pyramid import band_energies
from reschrom.theory.resolution import chromatography
from reschrom.theory.schedules import CosineSchedule, ddpm_schedule

STRUCT, TEX = "a red circle", "a red circle with stripes"


# --------------------------------------------------------------------------------------
# fixtures: tiny offline pipelines
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def if_pipe():
    from builders import build_tiny_if_pipeline

    return build_tiny_if_pipeline(resolution=16)


@pytest.fixture(scope="module")
def sd_pipe():
    from builders import build_tiny_sd_pipeline

    return build_tiny_sd_pipeline(resolution=16)


@pytest.fixture(scope="module")
def oracle_pipe():
    from reschrom.models.oracle import build_oracle_pipeline

    return build_oracle_pipeline(resolution=16, sampler="ddim")


def _run(pipe, composer_or_prompt, n=1, steps=4, seed=0):
    kw = dict(num_inference_steps=steps, guidance_scale=3.0, output_type="np", num_images_per_prompt=n)
    gen = torch.Generator().manual_seed(seed)
    if isinstance(composer_or_prompt, str):
        if "clean_caption" in inspect.signature(pipe.__call__).parameters:
            kw["clean_caption"] = False
        return pipe(prompt=composer_or_prompt, generator=gen, **kw).images
    return composer_or_prompt(generator=gen, **kw).images


class RowCounter:
    """Independent count of the denoiser's batch rows per call (a plain forward hook)."""

    def __init__(self, module):
        self.rows: list[int] = []
        self.h = module.register_forward_hook(lambda m, a, o: self.rows.append(int(a[0].shape[0])))

    def close(self):
        self.h.remove()


# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------


def test_heaviside_endpoints():
    ts = np.linspace(0, 0.999, 1000)
    w_s, w_t = heaviside_weights(1.0)
    assert all(w_s(t) == 0 and w_t(t) == 1 for t in ts)  # η = 1: texture alone
    w_s, w_t = heaviside_weights(0.0)
    assert all(w_s(t) == 1 and w_t(t) == 0 for t in np.append(ts, 1.0))  # η = 0: structure alone
    w_s, w_t = heaviside_weights(0.6)
    assert w_s(0.7) == 1 and w_t(0.7) == 0 and w_s(0.5) == 0 and w_t(0.5) == 1
    with pytest.raises(ValueError, match="eta"):
        heaviside_weights(1.5)


@given(
    eta=st.floats(0, 1),
    t=st.floats(0, 1),
    width=st.floats(0.01, 0.5),
    kind=st.sampled_from(["heaviside", "linear", "sigmoid"]),
)
def test_crossfades_are_partitions_of_unity(eta, t, width, kind):
    w = make_weights(kind, eta, width)
    vals = [f(t) for f in w]
    assert all(0.0 <= v <= 1.0 for v in vals)
    assert sum(vals) == pytest.approx(1.0, abs=1e-12)


@given(eta=st.floats(0.05, 0.95), width=st.floats(0.01, 0.5), t1=st.floats(0, 1), t2=st.floats(0, 1))
def test_crossfades_monotone(eta, width, t1, t2):
    lo, hi = sorted((t1, t2))
    for w_s, _ in (linear_weights(eta, width), sigmoid_weights(eta, width)):
        assert w_s(lo) <= w_s(hi) + 1e-15  # the structure prompt weighs more at noisier times


@given(
    sets=st.lists(st.sets(st.integers(0, 6), min_size=1), min_size=1, max_size=3),
    t=st.floats(0, 0.999),
    sched=st.sampled_from(["cosine", "linear"]),
)
def test_band_weights_follow_definition(sets, t, sched):
    schedule = CosineSchedule() if sched == "cosine" else ddpm_schedule("linear")
    M, T = 7, 1000
    ws = band_weights(schedule, [sorted(s) for s in sets], M, T)
    s_time = t if sched == "cosine" else t * T / (T - 1)  # discrete: step t·T of T-1
    r = chromatography(schedule, s_time, M)
    for w, s in zip(ws, sets):
        assert w(t) == pytest.approx(float(sum(r[m] for m in s)), rel=1e-12, abs=1e-15)


@given(split=st.integers(0, 7), t=st.floats(0, 0.999))
def test_band_split_sums_to_one(split, t):
    schedule = ddpm_schedule("squaredcos_cap_v2")
    ws = band_weights(schedule, compose.split_levels(7, split), 7, 1000)
    assert sum(w(t) for w in ws) == pytest.approx(1.0, abs=1e-12)


def test_band_weights_structure_early_texture_late():
    schedule = ddpm_schedule("squaredcos_cap_v2")
    w_s, w_t = make_weights("bands", 0.5, schedule=schedule, num_levels=7)
    assert w_s(0.95) > 0.9 and w_t(0.02) > 0.5
    assert w_t(0.02) > w_t(0.5) > w_t(0.95)
    with pytest.raises(ValueError, match="out of range"):
        band_weights(schedule, [[7]], 7)


# --------------------------------------------------------------------------------------
# bitwise references and evaluation counts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["if_pipe", "sd_pipe", "oracle_pipe"])
def test_eta_endpoints_reproduce_single_prompt_bitwise(which, request):
    pipe = request.getfixturevalue(which)
    s, x = ("disc", "grass") if which == "oracle_pipe" else (STRUCT, TEX)
    ref_s, ref_x = _run(pipe, s), _run(pipe, x)
    assert not np.array_equal(ref_s, ref_x)
    for eta, ref in ((0.0, ref_s), (1.0, ref_x)):
        out = _run(pipe, PromptComposer(pipe, [s, x], heaviside_weights(eta)))
        assert np.array_equal(out, ref), f"η = {eta} differs from the single-prompt image"
    mid = _run(pipe, PromptComposer(pipe, [s, x], heaviside_weights(0.5)))
    assert not np.array_equal(mid, ref_s) and not np.array_equal(mid, ref_x)


def test_eta_endpoints_bitwise_with_several_images(if_pipe):
    ref = _run(if_pipe, TEX, n=2)
    out = _run(if_pipe, PromptComposer(if_pipe, [STRUCT, TEX], heaviside_weights(1.0)), n=2)
    assert out.shape[0] == 2 and np.array_equal(out, ref)


@pytest.mark.parametrize(
    "weights",
    [heaviside_weights(0.5), linear_weights(0.5, 0.5), [lambda t: 1.0, lambda t: 1.0], [lambda t: 0.0, lambda t: 0.0]],
    ids=["heaviside", "linear", "naive", "none"],
)
def test_denoiser_rows_equal_active_prompts(if_pipe, weights):
    n = 2
    c = PromptComposer(if_pipe, [STRUCT, TEX], weights)
    counter = RowCounter(if_pipe.unet)
    try:
        _run(if_pipe, c, n=n, steps=6)
    finally:
        counter.close()
    assert len(counter.rows) == len(c.records) == 6
    for rows, rec in zip(counter.rows, c.records):
        active = [i for i, w in enumerate(rec.weights) if w != 0]
        assert rec.active == tuple(active)
        assert rows == n * (1 + len(active))  # uncond + one row per active prompt
    if isinstance(weights[0], compose.Heaviside):
        assert counter.rows == [2 * n] * 6  # exactly plain CFG's evaluations
    assert c.conditional_evaluations() == [len(r.active) for r in c.records]


def test_composed_eps_is_eq6(oracle_pipe):
    """The cond half the pipeline receives is ε_u + Σ w_i(ε_i - ε_u), so its CFG gives eq. 6."""
    den = oracle_pipe.unet
    w = [0.3, 0.9]
    c = PromptComposer(oracle_pipe, ["disc", "grass"], [lambda t: w[0], lambda t: w[1]])
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=den.dtype)
    t = torch.tensor(500)
    with c.hooks():  # the pipeline's batched call: [x, x] with [uncond, any prompt]
        out = den(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([c.uncond, c.cond[0]])).sample
    eu = den(x, t, encoder_hidden_states=c.uncond).sample
    e1 = den(x, t, encoder_hidden_states=c.cond[0]).sample
    e2 = den(x, t, encoder_hidden_states=c.cond[1]).sample
    torch.testing.assert_close(out[:1], eu)
    torch.testing.assert_close(out[1:], eu + w[0] * (e1 - eu) + w[1] * (e2 - eu))


def test_no_cfg_is_refused(if_pipe):
    c = PromptComposer(if_pipe, [STRUCT, TEX], heaviside_weights(0.5))
    with pytest.raises(ValueError, match="guidance"):
        c(guidance_scale=1.0, num_inference_steps=2)


def test_hooks_are_removed(if_pipe):
    c = PromptComposer(if_pipe, [STRUCT, TEX], heaviside_weights(0.5))
    _run(if_pipe, c, steps=2)
    assert not if_pipe.unet._forward_pre_hooks and not if_pipe.unet._forward_hooks


# --------------------------------------------------------------------------------------
# what the switch does, where it is exact: the oracle
# --------------------------------------------------------------------------------------


def test_texture_only_pair_switched_late_changes_only_fine_bands():
    """Two concepts with the same mean image and different texture spectra: switching late from
    one to the other changes the fine levels and leaves the coarse levels almost untouched."""
    from reschrom.models.oracle import build_oracle_pipeline

    common = dict(shape="disc", fg=(0.7, 0.5, -0.2), bg=(-0.4, -0.4, -0.2), amplitude=(0.3, 0.3, 0.3))
    pipe = build_oracle_pipeline(
        resolution=32,
        concepts=[dict(name="smooth", beta=3.5, **common), dict(name="rough", beta=0.5, kind="texture", **common)],
        sampler="ddim",
    )
    imgs = {}
    for eta in (0.0, 0.2, 1.0):
        out = _run(pipe, PromptComposer(pipe, ["smooth", "rough"], heaviside_weights(eta)), steps=30)
        imgs[eta] = torch.from_numpy(out).permute(0, 3, 1, 2).double()
    late = band_energies(imgs[0.2] - imgs[0.0])[0]
    full = band_energies(imgs[1.0] - imgs[0.0])[0]
    fine, coarse = slice(0, 2), slice(3, None)  # 32×32, 16×16 | 4×4 … 1×1
    assert late[fine].sum() / late.sum() > 0.8
    assert late[coarse].sum() < 0.2 * full[coarse].sum()


def test_sweep_metrics_and_images(tmp_path, oracle_pipe):
    pairs = [{"structure": "disc", "texture": "grass"}]
    df = compose.compose_sweep(
        oracle_pipe, pairs, [0.5], str(tmp_path), model="oracle", guidance_scale=3.0, num_inference_steps=4
    )
    pid = pair_id("disc", "grass")
    assert sorted(p.name for p in (tmp_path / pid).iterdir()) == ["eta_0.0.png", "eta_0.5.png", "eta_1.0.png"]
    assert list(df.columns) == compose.COMPOSE_COLUMNS
    assert len(df) == 3 * 5  # η ∈ {1, 0.5, 0} × levels 16 … 1
    ref = df[df.eta == 0.0]
    assert (ref.energy_vs_structure == 0).all() and (ref.energy_vs_texture > 0).any()
    assert (df[df.eta == 1.0].energy_vs_texture == 0).all()
    # the PNG round trip matches the tensor the metrics were computed from (8-bit)
    img = compose.load_png(str(tmp_path / pid / "eta_0.5.png"))
    assert img.shape == (16, 16, 3)


@pytest.fixture(scope="module")
def flow_model():
    """The rectified-flow toy (untrained, 8×8) wrapped as a ``kind: module`` model."""
    from reschrom.models.builders import build_flow_t2i, build_word_tokenizer
    from reschrom.models.module import ModuleModel

    torch.manual_seed(0)
    cfg = {"block_out_channels": [8, 16], "attention": [False, True], "norm_num_groups": 4,
           "text_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32}, "shift": 3.0}
    obj = build_flow_t2i(build_word_tokenizer([STRUCT, TEX]), cfg, sample_size=8)
    return ModuleModel.from_object("flow", obj, device="cpu", dtype=torch.float32)


def test_sweep_takes_a_module_model(tmp_path, flow_model):
    """compose_sweep is the one entry point: a kind: module model runs the project's DDIM with
    eq. 6's weights; at η = 0 and 1 its image is the single prompt's, bitwise."""
    from reschrom.sampling.cfg import model_noise, sample_cfg

    den = flow_model
    pairs = [{"structure": STRUCT, "texture": TEX}]
    df = compose.compose_sweep(den, pairs, [0.5], str(tmp_path), model="flow", seed=3, guidance_scale=3.0,
                               num_inference_steps=5)
    pid = pair_id(STRUCT, TEX)
    assert sorted(p.name for p in (tmp_path / pid).iterdir()) == ["eta_0.0.png", "eta_0.5.png", "eta_1.0.png"]
    assert list(df.columns) == compose.COMPOSE_COLUMNS and len(df) == 3 * 4  # η × levels 8 … 1
    assert (df[df.eta == 0.0].energy_vs_structure == 0).all() and (df[df.eta == 1.0].energy_vs_texture == 0).all()
    mid = df[df.eta == 0.5]
    assert (mid.energy_vs_structure > 0).any() and (mid.energy_vs_texture > 0).any()
    for eta, prompt in ((0.0, STRUCT), (1.0, TEX)):
        x0 = sample_cfg(den, [den.encode([prompt])], den.null_condition(1), guidance_scale=3.0,
                        num_inference_steps=5, x_T=model_noise(den, 1, 3, den.device))
        ref = np.round(((x0.double() + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        assert np.array_equal(compose.load_png(str(tmp_path / pid / f"eta_{eta}.png")), ref / 255.0)
    with pytest.raises(ValueError, match="call_kwargs"):
        compose.compose_sweep(den, pairs, [0.5], str(tmp_path), model="flow", call_kwargs={"eta": 1.0})


# --------------------------------------------------------------------------------------
# pair ids and config expansion
# --------------------------------------------------------------------------------------


def test_pair_ids_are_safe_and_stable():
    a = pair_id("A HD photo of times square", "An oil painting of times square")
    assert a == pair_id("A HD photo of times square", "An oil painting of times square")
    assert a.startswith("an-oil-painting-of-times-square-") and all(ch.isalnum() or ch == "-" for ch in a)
    assert pair_id("x", "y/../../etc") != pair_id("x2", "y/../../etc")
    assert "/" not in pair_id("x", "y/../../etc")


def test_pair_id_is_the_prompt_id_of_the_pair():
    """One id function: a pair is named by prompt_id of (texture, structure), the hash of their JSON list."""
    import hashlib
    import json

    s, x = "A HD photo of times square", "An oil painting of times square"
    digest = hashlib.sha256(json.dumps([x, s]).encode()).hexdigest()[:10]
    assert pair_id(s, x) == prompt_id(x, s) == f"an-oil-painting-of-times-square-{digest}"  # slug of the texture
    assert pair_id("émoji 🐶", "café") == prompt_id("café", "émoji 🐶") and pair_id("émoji 🐶", "café").startswith("cafe-")


@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30), st.text(max_size=30))
def test_pair_ids_are_file_names_and_tell_pairs_apart(s1, x1, s2, x2):
    a, b = pair_id(s1, x1), pair_id(s2, x2)
    assert re.fullmatch(PROMPT_ID_PATTERN, a) and len(a) <= 51
    assert a == pair_id(s1, x1)
    if (s1, x1) != (s2, x2):
        assert a != b
    if s1 != x1:
        assert pair_id(s1, x1) != pair_id(x1, s1)  # which prompt is the structure matters


def test_expand_pairs_templates():
    spec = {
        "pairs": [{"structure": "a", "texture": "b"}],
        "templates": {"structure": "A HD photo of {}", "texture": "An oil painting of {}", "subjects": ["cat", "dog"]},
    }
    pairs = expand_pairs(spec)
    assert pairs[1] == {"structure": "A HD photo of cat", "texture": "An oil painting of cat"}
    assert len(pairs) == 3
    assert sweep_etas([0.8, 0.2]) == [1.0, 0.8, 0.2, 0.0]


def test_registry_loads_oracle_and_pipelines_with_sampler(tmp_path, if_pipe):
    from diffusers import DDIMScheduler

    from reschrom.models.oracle import OraclePipeline
    from reschrom.models.registry import load_model

    pipe = load_model({"name": "oracle", "kind": "oracle"}, "cpu", resolution=8)
    assert isinstance(pipe, OraclePipeline) and pipe.unet.config.sample_size == 8
    if_pipe.save_pretrained(tmp_path / "t2i")
    pipe = load_model({"name": "p", "kind": "pipeline", "path": str(tmp_path / "t2i")}, "cpu", sampler="ddim")
    assert isinstance(pipe.scheduler, DDIMScheduler)
    with pytest.raises(ValueError, match="sampler 'euler'"):
        load_model({"name": "oracle", "kind": "oracle"}, "cpu", sampler="euler")


def test_run_list_must_name_defined_models(repo):
    import copy

    import yaml

    from reschrom.config import ConfigError, validate_config

    schema = repo / "schemas" / "config.schema.yaml"
    smoke = yaml.safe_load((repo / "configs" / "smoke.yaml").read_text())
    cfg = copy.deepcopy(smoke)
    cfg["compose"]["run"] = ["sd15"]
    with pytest.raises(ConfigError, match=r"compose\.run.*'sd15'.*not in the registry.*defined: oracle"):
        validate_config(cfg, schema)
    cfg = copy.deepcopy(smoke)
    cfg["models"]["sd15"] = {"kind": "pipeline"}
    with pytest.raises(ConfigError, match="path"):
        validate_config(cfg, schema)
    cfg = copy.deepcopy(smoke)
    del cfg["compose"]["etas"]
    del cfg["compose"]["overrides"]["oracle"]["pairs"]
    validate_config(cfg, schema)
    assert cfg["compose"]["etas"] == [1.0, 0.8, 0.6, 0.4, 0.2]  # schema defaults
    from reschrom.models.registry import stage_settings

    oracle = stage_settings(cfg, "compose", "oracle")
    assert oracle["pairs"] == cfg["compose"]["pairs"] and oracle["resolution"] == 8  # stage value + override
