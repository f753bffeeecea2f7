"""One adapter layer for every pipeline family: IF, SD (ε and v), SD3 (flow matching), the oracle.

For each family: the probe's energies (r̃ sums to 1, bands add up to ‖g‖²), bitwise-unchanged
images, per-step ᾱ against the scheduler, ε conversions against closed forms, the composer's
row counts and bitwise endpoints on SD3 (pooled embeddings swapped), x̂0 capture for flow.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builders import (
    build_tiny_if_pipeline,
    build_tiny_sd3_pipeline,
    build_tiny_sd_pipeline,
    build_tiny_sd_v_pipeline,
)
from reschrom.compose.composer import PromptComposer
from reschrom.compose.weights import heaviside_weights
from reschrom.measure.probe import GuidanceProbe
from reschrom.measure.trajectory import capturing_x0
from reschrom.models.adapters import FlowMatchAdapter, PipelineAdapter, VPAdapter
from reschrom.models.oracle import build_oracle_pipeline
from rounding import assert_equal_up_to_rounding

FAMILIES = ["if_pipe", "sd_pipe", "sd_v_pipe", "sd3_pipe", "oracle_pipe"]
STRUCT, TEX = "a red circle", "a red circle with stripes"


@pytest.fixture(scope="module")
def if_pipe():
    return build_tiny_if_pipeline(resolution=8, seed=0)


@pytest.fixture(scope="module")
def sd_pipe():
    return build_tiny_sd_pipeline(resolution=16, seed=0)


@pytest.fixture(scope="module")
def sd_v_pipe():
    return build_tiny_sd_v_pipeline(resolution=16, seed=1)


@pytest.fixture(scope="module")
def sd3_pipe():
    return build_tiny_sd3_pipeline(resolution=16, seed=0)


@pytest.fixture(scope="module")
def oracle_pipe():
    return build_oracle_pipeline(resolution=8, sampler="ddim")


def _prompt(name: str) -> str:
    return "a disc" if name == "oracle_pipe" else "a teddy bear playing the guitar"


def _call(pipe, prompt, n=2, steps=3, seed=0, **kw):
    adapter = PipelineAdapter.for_pipeline(pipe)
    kwargs = {**adapter.call_kwargs(), "output_type": "pt", **kw}
    return pipe(prompt, num_inference_steps=steps, guidance_scale=4.0, num_images_per_prompt=n,
                generator=torch.Generator().manual_seed(seed), **kwargs).images


# --------------------------------------------------------------------------------------
# what the adapter knows
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, family, prediction, sample_arg, pooled_arg, resolution, latent",
    [
        ("if_pipe", "if", "epsilon", "sample", None, 8, False),
        ("sd_pipe", "sd", "epsilon", "sample", None, 8, True),
        ("sd_v_pipe", "sd", "v_prediction", "sample", None, 8, True),
        ("sd3_pipe", "sd3", "flow", "hidden_states", "pooled_projections", 8, True),
        ("oracle_pipe", "oracle", "epsilon", "sample", None, 8, False),
    ],
)
def test_adapter_facts(name, family, prediction, sample_arg, pooled_arg, resolution, latent, request):
    pipe = request.getfixturevalue(name)
    a = PipelineAdapter.for_pipeline(pipe)
    assert PipelineAdapter.for_pipeline(a) is a
    assert (a.family, a.prediction, a.sample_arg, a.pooled_arg) == (family, prediction, sample_arg, pooled_arg)
    assert a.denoiser is (pipe.transformer if family == "sd3" else pipe.unet)
    assert a.resolution == resolution and a.num_train_timesteps == 1000
    assert isinstance(a, FlowMatchAdapter if family == "sd3" else VPAdapter)
    kw = a.call_kwargs(resolution=16)
    assert kw["output_type"] == ("latent" if latent else "pt")
    assert ("clean_caption" in kw) == (family == "if")
    if latent:
        assert kw["height"] == kw["width"] == 16 and a.probed_resolution(16) == 8


def test_adapter_refuses_a_bare_denoiser(sd_pipe):
    with pytest.raises(TypeError, match="not its denoiser"):
        PipelineAdapter.for_pipeline(sd_pipe.unet)
    with pytest.raises(TypeError, match="GuidanceProbe\\(pipe\\)"):
        GuidanceProbe(sd_pipe.unet)


def test_sd3_encode_prompt_gives_pooled_embeddings(sd3_pipe):
    e = PipelineAdapter.for_pipeline(sd3_pipe).encode_prompt(STRUCT, "cpu")
    assert e.pooled_cond is not None and e.pooled_cond.shape == (1, 64)
    assert set(e.pipeline_kwargs()) == {
        "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"
    }


# --------------------------------------------------------------------------------------
# conversions against closed forms
# --------------------------------------------------------------------------------------


def _x0_eps(seed=0, shape=(2, 4, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("t", [0, 37, 500, 999])
def test_vp_conversions_closed_form(sd_pipe, t):
    x0, eps = _x0_eps()
    ab = float(sd_pipe.scheduler.alphas_cumprod[t])
    x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
    den = sd_pipe.unet
    tt = torch.tensor(t)
    # ε prediction (with IF's extra variance channels appended: dropped)
    a = VPAdapter(sd_pipe, den, "sd", "epsilon")
    out = torch.cat([eps, torch.randn_like(eps)], dim=1)
    assert torch.equal(a.to_eps(x_t, out, tt), eps)
    torch.testing.assert_close(a.x0(x_t, out, tt), x0, rtol=0, atol=1e-9 / ab**0.5)
    # v prediction: v = √ᾱ ε − √(1−ᾱ) x0
    v = ab**0.5 * eps - (1 - ab) ** 0.5 * x0
    a = VPAdapter(sd_pipe, den, "sd", "v_prediction")
    torch.testing.assert_close(a.to_eps(x_t, v, tt), eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.x0(x_t, v, tt), x0, rtol=0, atol=1e-12)
    v2 = v + 0.1 * torch.randn_like(v)
    torch.testing.assert_close(a.guidance_eps(v, v2, tt), a.to_eps(x_t, v2, tt) - a.to_eps(x_t, v, tt))
    # x0 ("sample") prediction
    a = VPAdapter(sd_pipe, den, "sd", "sample")
    if t > 0:
        torch.testing.assert_close(a.to_eps(x_t, x0, tt), eps, rtol=0, atol=1e-9 / (1 - ab) ** 0.5)
    assert torch.equal(a.x0(x_t, x0, tt), x0)
    assert float(a.alpha_bar(tt)) == ab


@pytest.mark.parametrize("timestep", [1000.0, 857.6923, 500.0, 8.9286])
def test_flow_conversions_closed_form(sd3_pipe, timestep):
    a = PipelineAdapter.for_pipeline(sd3_pipe)
    x0, eps = _x0_eps(1)
    s = timestep / 1000
    x_flow = (1 - s) * x0 + s * eps
    u = eps - x0
    t = torch.tensor(timestep, dtype=torch.float32)
    s32 = float(t.double()) / 1000  # the σ the adapter reads from a float32 timestep
    torch.testing.assert_close(a.to_eps(x_flow, u, t), eps, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.x0(x_flow, u, t), x0, rtol=0, atol=1e-6)
    u2 = u + 0.1 * torch.randn_like(u)
    torch.testing.assert_close(a.guidance_eps(u, u2, t), (1 - s32) * (u2 - u))
    ab = (1 - s32) ** 2 / ((1 - s32) ** 2 + s32**2)
    # σ is read from the scheduler's own float32 tables (linear between its steps): float32 rounding
    assert float(a.alpha_bar(t)) == pytest.approx(ab, rel=1e-6, abs=1e-12)
    assert float(a.t_frac(t)) == float(a.t_native(t)) == pytest.approx(s32, rel=1e-6)
    # the VP x_t of the same noise level: x_t = √ᾱ x0 + √(1−ᾱ) ε = x_flow / ((1−σ)/√ᾱ)
    if s < 1:
        x_vp = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
        torch.testing.assert_close(x_vp * (1 - s32) / ab**0.5, (1 - s32) * x0 + s32 * eps)


def test_fractional_timesteps_match_euler_sigmas(sd_pipe):
    """ᾱ at fractional timesteps = 1/(1+σ²) with σ interpolated like diffusers' Euler scheduler."""
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler.from_config({**sd_pipe.scheduler.config, "timestep_spacing": "linspace"})
    sched.set_timesteps(7)
    a = PipelineAdapter.for_pipeline(sd_pipe)
    assert (sched.timesteps != sched.timesteps.round()).any()
    ab = a.alpha_bar(sched.timesteps).numpy()
    np.testing.assert_allclose(ab, 1 / (1 + sched.sigmas[:-1].double().numpy() ** 2), rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_schedule_is_on_the_t_frac_clock(name, request):
    a = PipelineAdapter.for_pipeline(request.getfixturevalue(name))
    ts = torch.tensor([999.0, 600.0, 250.0, 10.0])
    sched = a.schedule()
    np.testing.assert_allclose(sched.alpha_bar(a.t_frac(ts).numpy()), a.alpha_bar(ts).numpy(), rtol=1e-9)
    assert (np.diff(a.t_frac(ts).numpy()) < 0).all()


# --------------------------------------------------------------------------------------
# the probe on every family
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_probe_every_family(name, request):
    pipe = request.getfixturevalue(name)
    a = PipelineAdapter.for_pipeline(pipe)
    prompt = _prompt(name)
    plain = _call(pipe, prompt)
    with GuidanceProbe(pipe, keep_tensors=True, tensor_dtype=torch.float32) as probe:
        probed = _call(pipe, prompt)
    assert torch.equal(plain, probed)  # the hook returns nothing
    assert not a.denoiser._forward_hooks
    res = probe.result()
    S, _, B, M = res.energies.shape
    assert (S, B) == (3, 2) and M == 4 and res.resolution == 8  # 8×8 probed tensor: levels 8, 4, 2, 1
    # per-step ᾱ, t_frac against the scheduler
    sched = pipe.scheduler
    if a.family == "sd3":
        sig = sched.sigmas[:-1].double().numpy()
        np.testing.assert_allclose(res.t_frac, sig, rtol=1e-6)
        np.testing.assert_allclose(res.alpha_bar, (1 - sig) ** 2 / ((1 - sig) ** 2 + sig**2), rtol=1e-5, atol=1e-12)
        assert res.energies[0, 0].max() == 0.0  # σ = 1: ε = x_flow for every prompt, g = 0
    else:
        ts = sched.timesteps.numpy()
        np.testing.assert_array_equal(res.timesteps, ts)
        np.testing.assert_array_equal(res.alpha_bar, sched.alphas_cumprod.double().numpy()[ts])
        np.testing.assert_allclose(res.t_frac, ts / 999)
        assert (res.energies[0, 0].sum(-1) > 0).all()  # (the oracle's g can vanish later: collapsed posterior)
    # r̃ sums to 1 on every step with a CFG term above rounding noise (res.defined()) and is 0
    # elsewhere; bands add up to ‖g‖² (orthogonality)
    r = res.relative(warn=False)
    live = res.defined()
    np.testing.assert_allclose(r.sum(-1)[live], 1.0, rtol=1e-12)
    assert not r[~live].any()
    g = (res.tensors["eps_cond"] - res.tensors["eps_uncond"]).double()
    np.testing.assert_allclose(res.energies[:, 0].sum(-1), g.pow(2).sum((2, 3, 4)).numpy(), rtol=1e-4, atol=1e-10)
    for k, key in ((1, "eps_cond"), (2, "eps_uncond")):
        e = res.tensors[key].double().pow(2).sum((2, 3, 4)).numpy()
        np.testing.assert_allclose(res.energies[:, k].sum(-1), e, rtol=1e-5)


def test_probe_energies_are_eps_units_for_v(sd_v_pipe):
    """v prediction: the probe's ε_cond at each step equals the closed form √ᾱ·v + √(1−ᾱ)·x_t of
    an independent denoiser call."""
    pipe = sd_v_pipe
    with GuidanceProbe(pipe, keep_tensors=True, tensor_dtype=torch.float32) as probe:
        _call(pipe, STRUCT, n=1)
    res = probe.result()
    e = PipelineAdapter.for_pipeline(pipe).encode_prompt(STRUCT, "cpu")
    for s, t in enumerate(res.timesteps):
        x = res.tensors["x_t"][s]
        with torch.no_grad():
            v = pipe.unet(x, int(t), encoder_hidden_states=e.cond).sample
        ab = res.alpha_bar[s]
        # batch 1 here, the pipeline's batch of 2 there: equal up to float32 rounding of v and x_t
        assert_equal_up_to_rounding(res.tensors["eps_cond"][s], ab**0.5 * v + (1 - ab) ** 0.5 * x, scale_of=(v, x))


def test_probe_skips_sd3_skip_layer_calls(sd3_pipe):
    calls = []
    h = sd3_pipe.transformer.register_forward_hook(lambda m, a, k, o: calls.append(k.get("skip_layers")), with_kwargs=True)
    try:
        with GuidanceProbe(sd3_pipe) as probe:
            _call(sd3_pipe, STRUCT, n=1, steps=4, skip_guidance_layers=[0],
                  skip_layer_guidance_start=0.0, skip_layer_guidance_stop=1.0)
    finally:
        h.remove()
    assert any(c is not None for c in calls)  # the pipeline did call the skip-layer branch
    assert probe.result().num_steps == 4


# --------------------------------------------------------------------------------------
# composing on SD3 and SD-v
# --------------------------------------------------------------------------------------


class RowCounter:
    """Independent count of the denoiser's batch rows per call."""

    def __init__(self, adapter):
        self.rows: list[int] = []
        self.h = adapter.denoiser.register_forward_hook(
            lambda m, a, k, o: self.rows.append(int(adapter.sample(a, k).shape[0])), with_kwargs=True
        )

    def close(self):
        self.h.remove()


def _compose(pipe, composer_or_prompt, n=1, steps=4):
    kw = dict(num_inference_steps=steps, guidance_scale=3.0, output_type="pt", num_images_per_prompt=n,
              generator=torch.Generator().manual_seed(0))
    if isinstance(composer_or_prompt, str):
        return pipe(prompt=composer_or_prompt, **kw).images
    return composer_or_prompt(**kw).images


@pytest.mark.parametrize("name", ["sd3_pipe", "sd_v_pipe"])
def test_composer_heaviside_rows_and_bitwise_endpoints(name, request):
    pipe = request.getfixturevalue(name)
    a = PipelineAdapter.for_pipeline(pipe)
    n = 2
    ref_x = _compose(pipe, TEX, n=n)
    counter = RowCounter(a)
    try:
        c = PromptComposer(pipe, [STRUCT, TEX], heaviside_weights(1.0))
        out = _compose(pipe, c, n=n)
    finally:
        counter.close()
    assert torch.equal(out, ref_x)  # η = 1: the texture prompt alone, bitwise
    assert counter.rows == [2 * n] * 4  # exactly plain CFG's rows
    ref_s = _compose(pipe, STRUCT, n=n)
    assert not torch.equal(ref_s, ref_x)
    assert torch.equal(_compose(pipe, PromptComposer(pipe, [STRUCT, TEX], heaviside_weights(0.0)), n=n), ref_s)
    counter = RowCounter(a)
    try:
        c = PromptComposer(pipe, [STRUCT, TEX], heaviside_weights(0.5))
        mid = _compose(pipe, c, n=n)
    finally:
        counter.close()
    assert counter.rows == [2 * n] * 4 and {r.active for r in c.records} == {(0,), (1,)}
    assert not torch.equal(mid, ref_s) and not torch.equal(mid, ref_x)
    assert not a.denoiser._forward_pre_hooks and not a.denoiser._forward_hooks


def test_composer_sd3_swaps_pooled_and_combines_velocities(sd3_pipe):
    """Both prompts active: the cond half the pipeline gets is u_u + Σ w_i (u_i − u_u), with each
    prompt's own text and pooled embeddings (ε = x_flow + (1−σ)u is affine: same as in ε)."""
    tr = sd3_pipe.transformer
    w = [0.3, 0.9]
    c = PromptComposer(sd3_pipe, [STRUCT, TEX], [lambda t: w[0], lambda t: w[1]])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([700.0, 700.0])

    def run(ehs, pooled, batch):
        return tr(hidden_states=torch.cat([x] * batch), timestep=t[:1].expand(batch), encoder_hidden_states=ehs,
                  pooled_projections=pooled, return_dict=False)[0]

    with torch.no_grad():
        with c.hooks():
            out = run(torch.cat([c.uncond, c.cond[0]]), torch.cat([c.pooled_uncond, c.pooled[0]]), 2)
        assert c.records[-1].rows == 3 and c.records[-1].active == (0, 1)
        uu = run(c.uncond, c.pooled_uncond, 1)
        u1 = run(c.cond[0], c.pooled[0], 1)
        u2 = run(c.cond[1], c.pooled[1], 1)
    # the hook's batch of 3 against batch-1 calls: other kernels, equal up to float32 rounding
    assert_equal_up_to_rounding(out[:1], uu)
    assert_equal_up_to_rounding(out[1:], uu + w[0] * (u1 - uu) + w[1] * (u2 - uu), scale_of=(uu, u1, u2))


# --------------------------------------------------------------------------------------
# x̂0 capture for flow matching
# --------------------------------------------------------------------------------------


def test_capturing_x0_on_sd3_is_x_flow_minus_sigma_u(sd3_pipe):
    sched = sd3_pipe.scheduler
    seen = []
    original = type(sched).step

    def spy(self, model_output, timestep, sample, *a, **k):
        seen.append((model_output.clone(), float(timestep), sample.clone()))
        return original(self, model_output, timestep, sample, *a, **k)

    ref = _call(sd3_pipe, STRUCT, n=1, steps=4)
    type(sched).step = spy
    try:
        with capturing_x0(sd3_pipe) as cap:
            out = _call(sd3_pipe, STRUCT, n=1, steps=4)
    finally:
        type(sched).step = original
    assert torch.equal(out, ref) and "step" not in vars(sched)
    assert len(cap.x0) == len(seen) == 4
    sig = sched.sigmas[:-1].double().numpy()
    np.testing.assert_allclose(cap.t_frac, sig, rtol=1e-6)
    np.testing.assert_allclose(cap.t_native, sig, rtol=1e-6)
    for x0, (u, t, x) in zip(cap.x0, seen):
        torch.testing.assert_close(x0, x - (t / 1000) * u, rtol=1e-6, atol=1e-6)
    # at σ = 1 the sample is pure noise and x̂0 = x − u
    torch.testing.assert_close(cap.x0[0], seen[0][2] - seen[0][0])
