"""reschrom.guidance: per-band, per-time guidance rules (eq. 5 per band of eq. 19, r_m of eq. 18)
in every place they run: a classic pipeline's hook, the project's DDIM, a diffusers guider; the
config checks of the guidance_design section; the experiment's table contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builders import build_tiny_if_pipeline, build_tiny_sd3_pipeline
from reschrom.guidance.rules import BandRule, GuidanceError, band_scale, make_rule
from reschrom.theory.pyramid import band_decompose, band_reconstruct
from rounding import assert_equal_up_to_rounding

SCHED = {"type": "ddpm", "beta_schedule": "squaredcos_cap_v2"}


@pytest.mark.parametrize("R", [16, 28, 8])
def test_band_scale_is_the_weighted_band_sum(R):
    g = torch.randn(3, 2, R, R, generator=torch.Generator().manual_seed(R), dtype=torch.float64)
    bands = band_decompose(g)
    M = len(bands)
    w = torch.linspace(0.5, 7.0, M, dtype=torch.float64)
    ref = band_reconstruct([w[m] * b for m, b in enumerate(bands)])
    assert_equal_up_to_rounding(band_scale(g, w), ref, scale_of=(ref, g))
    wb = torch.rand(3, M, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 5
    ref_b = band_reconstruct([wb[:, m].reshape(-1, 1, 1, 1) * b for m, b in enumerate(bands)])
    assert_equal_up_to_rounding(band_scale(g, wb), ref_b, scale_of=(ref_b, g))
    with pytest.raises(GuidanceError, match="bands"):
        band_scale(g, w[:-1])


def test_cfg_rules_are_eq5_and_chroma_follows_the_theory():
    from reschrom.theory.resolution import chromatography
    from reschrom.theory.schedules import build_schedule

    c = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    u = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    cfg = make_rule("cfg", 4.0)(c, u, 0.5)
    assert torch.equal(cfg, u + 4.0 * (c - u))
    # power 0: every band at w, i.e. CFG
    assert_equal_up_to_rounding(make_rule("chroma", 4.0, schedule=SCHED, power=0.0)(c, u, 0.5), cfg, scale_of=(cfg,))
    rule = make_rule("chroma", 6.0, schedule=SCHED, power=1.0)
    sched = build_schedule("m", SCHED)
    grid = np.linspace(0, 1, 2001)
    r = chromatography(sched, grid, 5)
    for m in range(5):  # at band m's own peak it is guided at full scale; the others less
        t_peak = grid[int(np.argmax(r[:, m]))]
        w = rule.scales_at(t_peak, 5)
        assert w[m] == pytest.approx(6.0)
        assert np.all(w <= 6.0 + 1e-12) and np.all(w >= 1.0)
        expected = 1 + 5 * r[int(np.argmax(r[:, m]))] / r.max(axis=0)
        np.testing.assert_allclose(w, expected, rtol=1e-9)
    win = make_rule("chroma_window", 6.0, schedule=SCHED, share=0.5)
    assert set(win.scales_at(0.5, 5).tolist()) <= {1.0, 6.0}
    iv = make_rule("interval", 6.0, window=[0.2, 0.8])
    assert iv.scales_at(0.9, 5).tolist() == [1.0] * 5 and iv.scales_at(0.5, 5).tolist() == [6.0] * 5


@pytest.mark.parametrize("spec", [
    SCHED,
    {"type": "ddpm", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"type": "flow_matching", "shift": 3.0},
    {"type": "edm"},
])
@pytest.mark.parametrize("theta", [0.0, 0.3, 0.7])
def test_chroma_onset_guides_each_band_on_its_rising_flank_only(spec, theta):
    """chroma_onset: w_m(t) = w iff r_m(t) ≥ θ·max r_m and t is not past band m's peak t*_m < 1,
    else 1. The expectation is computed here from eq. 16 (p_m = ᾱ_{τ_m}, r_m ∝ p_m(1 − p_m)) on
    the schedule's ᾱ, not from the rule's code; the coarsest band peaks at t = 1 and is never
    guided, not even at t = 1; each interior band's guided times are one interval that starts at
    its peak, along which r_m by eq. 18 (numerical derivative, ``chromatography_derivative``)
    rises towards the peak."""
    from reschrom.theory.resolution import chromatography_derivative
    from reschrom.theory.schedules import build_schedule

    M, w = 5, 4.0
    sched = build_schedule("m", spec)
    grid = np.linspace(0.0, 1.0, 2001)
    a = np.clip(np.asarray(sched.alpha_bar(grid), dtype=np.float64), 0.0, 1.0)[:, None]
    k = 4.0 ** np.arange(M)
    p = k * a / ((k - 1.0) * a + 1.0)
    q = p * (1.0 - a) / ((k - 1.0) * a + 1.0)  # p(1 − p)
    # the limits of the normalised p(1 − p): ∝ 4^m at ᾱ = 0, ∝ 4^−m at ᾱ = 1
    q = np.where(a <= 0, k, np.where(a >= 1, 1.0 / k, q))
    r = q / q.sum(axis=1, keepdims=True)
    peak_t = grid[r.argmax(axis=0)]
    assert peak_t[-1] == 1.0 and np.all(np.diff(peak_t) >= 0)  # coarse bands peak earlier in sampling
    rule = make_rule("chroma_onset", w, schedule=spec, share=theta)
    for i in list(range(3, 2001, 37)) + [2000]:  # grid points away from the peaks' own, and t = 1
        t = grid[i]
        expected = np.where((r[i] >= theta * r.max(axis=0) - 1e-12) & (t >= peak_t) & (peak_t < 1.0), w, 1.0)
        got = rule.scales_at(t, M)
        assert got.tolist() == expected.tolist(), (t, got, expected)
        assert got[-1] == 1.0
    fine = np.linspace(0.0, 1.0, 1201)[1:-1]
    guided = np.stack([rule.scales_at(t, M) == w for t in fine])
    r18 = chromatography_derivative(sched, fine, M)
    for m in range(1, M - 1):
        idx = np.flatnonzero(guided[:, m])
        assert len(idx) and np.all(np.diff(idx) == 1), m  # one interval of t
        assert abs(fine[idx[0]] - peak_t[m]) <= 2e-3  # … starting at the band's peak
        seg = r18[idx, m]
        seg = seg[np.isfinite(seg)]
        assert np.all(np.diff(seg) <= 1e-6), m  # r_m rises towards the peak (falls with t)
    # defaults: θ = 0.3 for chroma_onset, 0.5 for chroma_window
    on, win = make_rule("chroma_onset", w, schedule=spec), make_rule("chroma_window", w, schedule=spec)
    on3, win5 = (make_rule("chroma_onset", w, schedule=spec, share=0.3),
                 make_rule("chroma_window", w, schedule=spec, share=0.5))
    win3 = make_rule("chroma_window", w, schedule=spec, share=0.3)
    differ = False
    for t in grid[5::50]:
        assert on.scales_at(t, M).tolist() == on3.scales_at(t, M).tolist()
        assert win.scales_at(t, M).tolist() == win5.scales_at(t, M).tolist()
        differ |= win.scales_at(t, M).tolist() != win3.scales_at(t, M).tolist()
        assert np.all((on.scales_at(t, M) == w) <= (win3.scales_at(t, M) == w))  # onset ⊂ window
    assert differ
    c = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    u = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    t = 0.5
    ws = rule.scales_at(t, M)
    bands = band_decompose(c - u)
    ref = u + band_reconstruct([float(ws[m]) * b for m, b in enumerate(bands)])
    assert_equal_up_to_rounding(rule(c, u, t), ref, scale_of=(ref, c, u))


@pytest.mark.parametrize("bad", [
    dict(method="cfg", scale=0.0), dict(method="cfg", scale=-2.0), dict(method="interval", window=[0.7, 0.3]),
    dict(method="interval", window=[-0.1, 0.5]), dict(method="magic"), dict(method="chroma"),
    dict(method="chroma_onset"), dict(method="chroma_onset", schedule=SCHED, share=1.5),
])
def test_bad_rules_are_one_line(bad):
    kw = {"scale": 3.0, **bad}
    with pytest.raises(GuidanceError) as e:
        BandRule(kw.pop("method"), **kw)
    assert "\n" not in str(e.value)


def _count_calls(module):
    n = [0]
    h = module.register_forward_pre_hook(lambda *a: n.__setitem__(0, n[0] + 1))
    return n, h


@pytest.mark.parametrize("build", [build_tiny_if_pipeline, build_tiny_sd3_pipeline])
def test_pipeline_hook_cfg_is_the_pipelines_cfg_and_costs_nothing(build):
    from reschrom.guidance.apply import GuidedPipeline
    from reschrom.models.adapters import PipelineAdapter

    pipe = build()
    den = PipelineAdapter.for_pipeline(pipe).denoiser
    kw = dict(prompt=["a red circle"], num_inference_steps=4, output_type="pt")
    if "clean_caption" in pipe.__call__.__code__.co_varnames:
        kw["clean_caption"] = False
    n0, h = _count_calls(den)
    ref = pipe(guidance_scale=5.0, generator=torch.Generator().manual_seed(0), **kw).images
    h.remove()
    n1, h = _count_calls(den)
    out = GuidedPipeline(pipe, make_rule("cfg", 5.0))(generator=torch.Generator().manual_seed(0), **kw).images
    h.remove()
    assert n0[0] == n1[0]
    assert_equal_up_to_rounding(out, ref, scale_of=(ref,))
    chroma = GuidedPipeline(pipe, make_rule("chroma", 5.0, schedule=PipelineAdapter.for_pipeline(pipe).schedule()))
    other = chroma(generator=torch.Generator().manual_seed(0), **kw).images
    assert (other - ref).abs().max() > 1e-4  # a different rule changes the images


TRUE_CFG = {  # builder, call arguments, the pipeline's CFG scale argument
    "Flux": ("build_tiny_flux_pipeline", dict(height=16, width=16, negative_prompt="", max_sequence_length=16),
             "true_cfg_scale"),
    "Qwen-Image": ("build_tiny_qwenimage_pipeline",
                   dict(height=32, width=32, negative_prompt="", max_sequence_length=16), "true_cfg_scale"),
    "Lumina 2": ("build_tiny_lumina2_pipeline", dict(height=64, width=64, max_sequence_length=16, system_prompt=""),
                 "guidance_scale"),
    "CogView4": ("build_tiny_cogview4_pipeline", dict(height=16, width=16), "guidance_scale"),
}


@pytest.mark.parametrize("family", sorted(TRUE_CFG))
def test_pipeline_hook_on_true_cfg_loops(family):
    """Two calls per step (packed latents for Flux and Qwen-Image, Lumina 2's negated output and
    norm rescale): the cfg rule gives the loop's own CFG, a chroma rule other latents, and the
    denoiser is called as often as without the hook."""
    import builders
    from reschrom.guidance.apply import GuidedPipeline
    from reschrom.models.adapters import PipelineAdapter

    name, kw, scale_arg = TRUE_CFG[family]
    pipe = getattr(builders, name)()
    pipe.set_progress_bar_config(disable=True)
    den = PipelineAdapter.for_pipeline(pipe).denoiser
    kw = dict(prompt=["a red circle"], num_inference_steps=3, output_type="latent", **kw)
    n0, h = _count_calls(den)
    ref = pipe(generator=torch.Generator().manual_seed(0), **{scale_arg: 5.0}, **kw)[0]
    h.remove()
    n1, h = _count_calls(den)
    out = GuidedPipeline(pipe, make_rule("cfg", 5.0))(generator=torch.Generator().manual_seed(0), **kw)[0]
    h.remove()
    assert n0[0] == n1[0] == 6
    assert_equal_up_to_rounding(out, ref, scale_of=(ref,))
    sched = PipelineAdapter.for_pipeline(pipe).schedule()
    other = GuidedPipeline(pipe, make_rule("chroma", 5.0, schedule=sched))(generator=torch.Generator().manual_seed(0), **kw)[0]
    assert (other - ref).abs().max() > 1e-3


def test_denoiser_guide_cfg_is_sample_cfg():
    from reschrom.guidance.apply import denoiser_guide
    from reschrom.models.module import ModuleModel
    from reschrom.sampling.cfg import model_noise, sample_cfg

    class Lin:
        resolution, channels = 8, 3
        schedule = {"type": "flow_matching", "shift": 1.0}

        def encode(self, prompts):
            return torch.tensor([[float(len(p))] for p in prompts])

        def null_condition(self, batch):
            return torch.zeros(batch, 1)

        def eps(self, x, ab, cond):
            return 0.5 * x + 0.1 * cond.reshape(-1, 1, 1, 1) * torch.linspace(-1, 1, 8).reshape(1, 1, 1, 8)

    m = ModuleModel.from_object("lin", Lin(), factory="tests:Lin", device="cpu", dtype=torch.float32)
    x_T = model_noise(m, 2, 0)
    conds, unc = [m.encode(["ab", "abcd"])], m.null_condition(2)
    ref = sample_cfg(m, conds, unc, guidance_scale=3.0, num_inference_steps=5, x_T=x_T)
    out = sample_cfg(m, conds, unc, guidance_scale=1.0, num_inference_steps=5, x_T=x_T,
                     guide=denoiser_guide(make_rule("cfg", 3.0), 5))
    assert_equal_up_to_rounding(out, ref, scale_of=(ref,))
    ch = sample_cfg(m, conds, unc, guidance_scale=1.0, num_inference_steps=5, x_T=x_T,
                    guide=denoiser_guide(make_rule("chroma", 3.0, schedule=Lin.schedule), 5))
    assert (ch - ref).abs().max() > 1e-4


def test_diffusers_guider_matches_the_rule_and_diffusers_cfg():
    from diffusers import DDPMScheduler
    from diffusers.guiders import ClassifierFreeGuidance

    from reschrom.guidance.guider import ChromatographyGuidance

    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    c = torch.randn(2, 4, 16, 16)
    u = torch.randn(2, 4, 16, 16)
    g = ChromatographyGuidance.for_scheduler(sched, guidance_scale=5.0, method="cfg")
    ref = ClassifierFreeGuidance(guidance_scale=5.0)
    for gd in (g, ref):
        gd.set_state(step=3, num_inference_steps=10, timestep=torch.tensor(700))
    assert torch.equal(g.forward(c, u).pred, ref.forward(c, u).pred)
    assert g.num_conditions == 2
    ch = ChromatographyGuidance.for_scheduler(sched, guidance_scale=5.0, method="chroma", power=2.0)
    ch.set_state(step=3, num_inference_steps=10, timestep=torch.tensor(700))
    rule = make_rule("chroma", 5.0, schedule=ch.config.schedule, power=2.0)
    assert torch.equal(ch.forward(c, u).pred, rule(c, u, 700 / 999))
    again = ChromatographyGuidance.from_config(ch.config)  # JSON config round-trips
    again.set_state(step=3, num_inference_steps=10, timestep=torch.tensor(700))
    assert torch.equal(again.forward(c, u).pred, ch.forward(c, u).pred)
    ch.set_state(step=9, num_inference_steps=10, timestep=torch.tensor(10))
    on = ChromatographyGuidance.for_scheduler(sched, guidance_scale=5.0, method="chroma_onset")
    on.set_state(step=3, num_inference_steps=10, timestep=torch.tensor(700))
    rule_on = make_rule("chroma_onset", 5.0, schedule=on.config.schedule)
    assert torch.equal(on.forward(c, u).pred, rule_on(c, u, 700 / 999))
    on2 = ChromatographyGuidance.from_config(on.config)
    on2.set_state(step=3, num_inference_steps=10, timestep=torch.tensor(700))
    assert torch.equal(on2.forward(c, u).pred, on.forward(c, u).pred)
    ch2 = ChromatographyGuidance.from_config(ch.config, stop=0.5)
    ch2.set_state(step=9, num_inference_steps=10, timestep=torch.tensor(10))
    assert torch.equal(ch2.forward(c, u).pred, c) and ch2.num_conditions == 1


def test_guider_in_a_modular_sdxl_pipeline():
    """ChromatographyGuidance in a Modular Diffusers pipeline (tiny SDXL, built offline): at p = 0
    it is ClassifierFreeGuidance, bitwise; at p = 1 it changes the images, and the t_frac it
    guides at is the scheduler's timestep over T − 1 at every step."""
    from diffusers.guiders import ClassifierFreeGuidance
    from diffusers.modular_pipelines import StableDiffusionXLAutoBlocks

    from builders import build_tiny_sdxl_pipeline
    from reschrom.guidance.apply import RecordingRule
    from reschrom.guidance.guider import ChromatographyGuidance

    classic = build_tiny_sdxl_pipeline(resolution=16)
    pipe = StableDiffusionXLAutoBlocks().init_pipeline()
    pipe.update_components(**{k: getattr(classic, k) for k in (
        "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "scheduler")})
    pipe.set_progress_bar_config(disable=True)

    def run(guider):
        pipe.update_components(guider=guider)
        return pipe(prompt="a red circle", num_inference_steps=4, generator=torch.Generator().manual_seed(0),
                    height=16, width=16, output="images", output_type="pt")

    ref = run(ClassifierFreeGuidance(guidance_scale=5.0))
    p0 = run(ChromatographyGuidance.for_scheduler(classic.scheduler, guidance_scale=5.0, method="chroma", power=0.0))
    assert torch.equal(p0, ref)
    g1 = ChromatographyGuidance.for_scheduler(classic.scheduler, guidance_scale=5.0, method="chroma", power=1.0)
    g1.rule = rec = RecordingRule(g1.rule)
    p1 = run(g1)
    assert (p1 - ref).abs().max() > 1e-3
    seen = [t for _, t, _ in rec.records]
    np.testing.assert_allclose(seen, pipe.scheduler.timesteps.double().numpy() / 999, rtol=1e-12)


@pytest.mark.parametrize("methods, key", [
    ([{"method": "cfg", "scales": [2.0, 0.0]}], "guidance_design.methods.0.scales.1"),
    ([{"method": "interval", "scales": [2.0], "window": [0.9, 0.1]}], "guidance_design.methods.0.window"),
    ([{"method": "interval", "scales": [2.0], "window": [0.1, 1.5]}], "guidance_design.methods.0.window"),
    ([{"method": "bands", "scales": [[2.0, 2.0]]}], "guidance_design.methods.0.scales.0"),
    ([{"method": "nope", "scales": [2.0]}], "guidance_design.methods.0.method"),
    ([{"method": "chroma_onset", "scales": [2.0], "share": -0.2}], "guidance_design.methods.0.share"),
])
def test_bad_guidance_config_is_one_line_naming_the_key(repo, methods, key):
    import yaml

    from reschrom.config import ConfigError, validate_config

    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    cfg["guidance_design"]["methods"] = methods
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, repo / "schemas" / "config.schema.yaml")
    assert f"'{key}'" in str(e.value) and "\n" not in str(e.value)


def test_oracle_sweep_table_contract():
    from reschrom.guidance.experiment import DESIGN_COLUMNS, _oracle_reference, guidance_sweep
    from reschrom.guidance.summary import pareto_front, summarise
    from reschrom.models.oracle import build_oracle_pipeline

    pipe = build_oracle_pipeline(8, sampler="ddim")
    prompts = ["a disc", "grass"]
    ref = _oracle_reference(pipe, prompts, 2, 64, 0)
    methods = [{"method": "cfg", "scales": [2.0, 4.0]}, {"method": "chroma", "scales": [4.0], "power": 1.0},
               {"method": "apg", "scales": [4.0]}]
    df, ch = guidance_sweep(pipe, prompts, methods, model="oracle", reference=ref, num_samples=3, seeds=[0],
                            num_inference_steps=4, oracle=True)
    assert list(df.columns) == DESIGN_COLUMNS
    assert len(df) == 4 * 2 and df["nfe"].eq(8).all()
    assert df["accuracy_colour"].isna().all() and df["accuracy_concept"].between(0, 1).all()
    assert (df["diversity"] > 0).all() and np.isfinite(df["lsd_db"]).all()
    # where the applied term is nonzero its band shares sum to 1 (the oracle's vanishes once its
    # posterior has chosen the concept: r̃ undefined there, NaN)
    sums = ch.dropna(subset=["r_applied"]).groupby(["method", "scale", "step"])["r_applied"].sum()
    assert len(sums) >= 8
    np.testing.assert_allclose(sums, 1.0, rtol=1e-9)
    s = summarise(df, n_boot=20)
    assert len(s) == 4 and {"accuracy_lo", "accuracy_hi"} <= set(s.columns)
    assert pareto_front(s, "diversity").any()


def test_paired_difference_pairs_by_prompt_and_seed():
    import pandas as pd

    from reschrom.guidance.summary import paired_difference

    rng = np.random.default_rng(0)
    rows = []
    for p in range(10):
        base = rng.normal(0, 1.0)  # a prompt effect shared by both settings
        for seed in (0, 1):
            rows.append({"method": "cfg", "scale": 5.0, "prompt": f"p{p}", "seed": seed, "acc": base})
            rows.append({"method": "chroma", "scale": 5.0, "prompt": f"p{p}", "seed": seed, "acc": base + 0.1 + 0.01 * seed})
    df = pd.DataFrame(rows)
    m, lo, hi = paired_difference(df, ("chroma", 5.0), ("cfg", 5.0), "acc", n_boot=200)
    assert m == pytest.approx(0.105) and lo == pytest.approx(0.105) and hi == pytest.approx(0.105)
    m2, lo2, hi2 = paired_difference(df, ("cfg", 5.0), ("chroma", 5.0), "acc", n_boot=200)
    assert m2 == pytest.approx(-0.105)
    with pytest.raises(KeyError, match="apg"):
        paired_difference(df, ("apg", 5.0), ("cfg", 5.0), "acc")


def test_guider_clock_on_shifted_flow_and_edm_schedulers():
    """The guider's t_frac is the schedule's own time, not σ: with SD3's shift s = 3 a timestep of
    500 (σ' = 0.5) is t_frac 0.25, since 3·0.25/(1 + 2·0.25) = 0.5; EDM's timestep is c_noise =
    ln(σ)/4, so c_noise = ln(80)/4 is σ_max, t_frac 1, and ln(0.002)/4 is σ_min, t_frac 0."""
    import math

    from diffusers import EDMEulerScheduler, FlowMatchEulerDiscreteScheduler

    from reschrom.guidance.guider import ChromatographyGuidance

    g = ChromatographyGuidance.for_scheduler(FlowMatchEulerDiscreteScheduler(shift=3.0), method="chroma")
    assert g.t_frac(torch.tensor([500.0])) == pytest.approx(0.25, abs=1e-12)
    assert g.t_frac(1000.0) == pytest.approx(1.0) and g.t_frac(0.0) == pytest.approx(0.0)
    e = ChromatographyGuidance.for_scheduler(EDMEulerScheduler(sigma_min=0.002, sigma_max=80.0), method="chroma")
    assert e.t_frac(math.log(80.0) / 4) == pytest.approx(1.0, abs=1e-9)
    assert e.t_frac(math.log(0.002) / 4) == pytest.approx(0.0, abs=1e-9)
    # and the scheduler's own timesteps map to a decreasing clock in [0, 1]
    s = EDMEulerScheduler()
    s.set_timesteps(8)
    t = [e.t_frac(float(x)) for x in s.timesteps]
    assert all(0 <= a <= 1 for a in t) and t == sorted(t, reverse=True)


def test_guidance_experiment_refuses_a_pipeline_model_in_one_line(repo):
    """A latent diffusers pipeline (samples in [0, 1] pixels, bands on the latent grid) would give
    meaningless accuracy/LSD rows: the experiment refuses it at planning, naming the model."""
    import yaml

    from reschrom.config import ConfigError, validate_config

    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    cfg["models"]["sdxl"] = {"kind": "pipeline", "path": "stabilityai/stable-diffusion-xl-base-1.0"}
    cfg["guidance_design"]["run"] = ["oracle", "sdxl"]
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, repo / "schemas" / "config.schema.yaml")
    msg = str(e.value)
    assert "'guidance_design.run'" in msg and "'sdxl'" in msg and "\n" not in msg
