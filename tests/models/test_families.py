"""Pipeline families beyond SD/IF/SD3 (issue 22, the "silently wrong" part): AuraFlow's clock,
SDXL's pooled embeddings, PixArt's attention masks, and one-line refusals for the loops the
adapter cannot read (unchecked true-CFG loops such as Chroma; unknown flow clocks; CFG off).

Every expectation is computed independently of the code under test: the clock from the
scheduler's own ``sigmas``/``timesteps`` and from a plain forward hook on the denoiser, the CFG
term from the denoiser's own two predictions, composed images from the single-prompt runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reschrom.compose.composer import PromptComposer
from reschrom.compose.weights import heaviside_weights
from reschrom.measure.probe import GuidanceProbe
from reschrom.measure.trajectory import capturing_x0
from reschrom.models.adapters import PipelineAdapter
from reschrom.theory.pyramid import band_energies

STRUCT, TEX = "a red circle", "a blue square with stripes"
STEPS = 3


class CallRecorder:
    """Plain forward hook on a denoiser: every call's timestep, x_t and raw output."""

    def __init__(self, module: torch.nn.Module, sample_arg: str) -> None:
        self.calls: list[dict[str, torch.Tensor]] = []

        def hook(m, args, kwargs, out):
            x = args[0] if args else kwargs[sample_arg]
            o = out[0] if isinstance(out, tuple) else getattr(out, "sample", out)
            self.calls.append({"t": kwargs["timestep"].detach().clone(), "x": x.detach().clone(), "out": o.detach().clone()})

        self.h = module.register_forward_hook(hook, with_kwargs=True)

    def close(self) -> None:
        self.h.remove()


def _kw(name: str) -> dict:
    kw = dict(num_inference_steps=STEPS, guidance_scale=3.0, height=16, width=16)
    if name == "pixart":
        kw.update(use_resolution_binning=False, clean_caption=False)
    return kw


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def auraflow():
    from builders import build_tiny_auraflow_pipeline

    return build_tiny_auraflow_pipeline()


@pytest.fixture(scope="module")
def sdxl():
    from builders import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline()


@pytest.fixture(scope="module")
def pixart():
    from builders import build_tiny_pixart_pipeline

    return build_tiny_pixart_pipeline()


# --------------------------------------------------------------------------------------
# AuraFlow: the transformer gets σ, the scheduler σ·1000
# --------------------------------------------------------------------------------------


def test_auraflow_probe_records_the_schedulers_sigma(auraflow):
    pipe = auraflow
    ref = pipe(STRUCT, generator=_gen(), output_type="latent", **_kw("auraflow")).images
    rec = CallRecorder(pipe.transformer, "hidden_states")
    try:
        with GuidanceProbe(pipe, keep_tensors=True) as probe:
            out = pipe(STRUCT, generator=_gen(), output_type="latent", **_kw("auraflow")).images
    finally:
        rec.close()
    assert torch.equal(out, ref), "the probe changed the image"
    sigmas = pipe.scheduler.sigmas[:STEPS].double().numpy()  # the scheduler's own σ of each step
    assert sigmas[0] == pytest.approx(1.0) and sigmas[-1] < 0.9
    res = probe.result()
    np.testing.assert_allclose(res.t_native, sigmas, rtol=1e-6)
    np.testing.assert_allclose(res.t_frac, sigmas, rtol=1e-6)
    np.testing.assert_allclose(res.alpha_bar, (1 - sigmas) ** 2 / ((1 - sigmas) ** 2 + sigmas**2), rtol=1e-5, atol=1e-12)
    # g = (1−σ)(u_c − u_u) from the transformer's own two predictions, σ from the scheduler
    assert len(rec.calls) == STEPS
    for k, call in enumerate(rec.calls):
        u_u, u_c = call["out"].double().chunk(2)
        g = (1 - sigmas[k]) * (u_c - u_u)
        x = call["x"].double()[:1]
        eps_c = x + (1 - sigmas[k]) * u_c  # ε = x_flow + (1−σ)·u
        torch.testing.assert_close(res.energies[k, 0], band_energies(g, 2).numpy(), rtol=1e-4, atol=1e-10)
        torch.testing.assert_close(
            res.tensors["eps_cond"][k].double(), eps_c.to(torch.float16).double(), rtol=1e-3, atol=1e-3
        )


def test_auraflow_x0_capture_on_the_schedulers_sigma(auraflow):
    pipe = auraflow
    rec = CallRecorder(pipe.transformer, "hidden_states")
    try:
        with capturing_x0(pipe) as cap:
            pipe(STRUCT, generator=_gen(), output_type="latent", **_kw("auraflow"))
    finally:
        rec.close()
    sigmas = pipe.scheduler.sigmas[:STEPS].double().numpy()
    np.testing.assert_allclose(cap.t_native, sigmas, rtol=1e-6)
    for k, call in enumerate(rec.calls):
        u_u, u_c = call["out"].double().chunk(2)
        u = u_u + 3.0 * (u_c - u_u)  # the pipeline's guided velocity
        x0 = call["x"].double()[:1] - sigmas[k] * u  # x̂0 = x_flow − σ·u
        torch.testing.assert_close(cap.x0[k].double(), x0, rtol=1e-4, atol=1e-5)


def test_auraflow_composes_at_the_endpoints(auraflow):
    # the tiny AuraFlow's image tokens barely attend to the text: a large scale makes prompts differ
    _endpoints(auraflow, "auraflow", guidance_scale=30.0)


# --------------------------------------------------------------------------------------
# composing swaps everything that belongs to a prompt
# --------------------------------------------------------------------------------------


def _endpoints(pipe, name: str, guidance_scale: float = 3.0) -> None:
    """η = 0 and 1 reproduce the single-prompt latents to 1e-5 of their scale; η = 0.5 switches
    from the structure to the texture prompt where t/T crosses 0.5."""
    kw = dict(_kw(name), output_type="latent", guidance_scale=guidance_scale)
    ref_s = pipe(STRUCT, generator=_gen(), **kw).images.double()
    ref_x = pipe(TEX, generator=_gen(), **kw).images.double()
    tol = 1e-5 * float(ref_s.abs().max())
    assert float((ref_s - ref_x).abs().max()) > 50 * tol, "the two prompts give the same latents: the test could not fail"
    for eta, ref in ((0.0, ref_s), (1.0, ref_x)):
        out = PromptComposer(pipe, [STRUCT, TEX], heaviside_weights(eta))(generator=_gen(), **kw).images.double()
        err = float((out - ref).abs().max())
        assert err <= tol, f"{name}: η = {eta} differs from the single-prompt latents by {err:.3g} (tolerance {tol:.3g})"
    c = PromptComposer(pipe, [STRUCT, TEX], heaviside_weights(0.5))
    mid = c(generator=_gen(), **kw).images.double()
    assert not torch.equal(mid, ref_s) and not torch.equal(mid, ref_x)
    # the switch happens at the right step: structure while t/T ≥ η, texture after
    assert [r.active for r in c.records] == [(0,) if r.t_frac >= 0.5 else (1,) for r in c.records]
    assert {r.active for r in c.records} == {(0,), (1,)}


def test_sdxl_composing_swaps_the_pooled_text_embeds(sdxl):
    _endpoints(sdxl, "sdxl")


def test_sdxl_composing_evaluates_pooled_per_prompt(sdxl):
    """A naive composition (both prompts at every step) feeds each prompt row its own pooled
    embedding: ``added_cond_kwargs["text_embeds"]`` of the call equals encode_prompt's."""
    pipe = sdxl
    c = PromptComposer(pipe, [STRUCT, TEX], [lambda t: 0.5, lambda t: 0.5])
    seen: list[torch.Tensor] = []
    h = pipe.unet.register_forward_hook(  # a forward hook sees the call as the pre-hooks rewrote it
        lambda m, a, k, o: seen.append(k["added_cond_kwargs"]["text_embeds"].clone()), with_kwargs=True
    )
    try:
        c(generator=_gen(), output_type="latent", **_kw("sdxl"))
    finally:
        h.remove()
    own = [pipe.encode_prompt(p, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True)
           for p in (STRUCT, TEX)]
    assert len(seen) == STEPS
    for te in seen:
        assert te.shape[0] == 3
        torch.testing.assert_close(te[0], own[0][3][0])  # uncond
        torch.testing.assert_close(te[1], own[0][2][0])
        torch.testing.assert_close(te[2], own[1][2][0])


def test_pixart_composing_swaps_the_attention_mask(pixart):
    _endpoints(pixart, "pixart")


def test_pixart_probe_clock_and_bitwise(pixart):
    pipe = pixart
    kw = dict(output_type="latent", **_kw("pixart"))
    ref = pipe(STRUCT, generator=_gen(), **kw).images
    with GuidanceProbe(pipe) as probe:
        out = pipe(STRUCT, generator=_gen(), **kw).images
    assert torch.equal(out, ref)
    res = probe.result()
    np.testing.assert_array_equal(res.t_native, pipe.scheduler.timesteps.double().numpy())
    ac = pipe.scheduler.alphas_cumprod.double().numpy()
    np.testing.assert_allclose(res.alpha_bar, ac[pipe.scheduler.timesteps.numpy()], rtol=1e-12)


# --------------------------------------------------------------------------------------
# one line, naming the class, for what the adapter cannot read
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flux():
    from builders import build_tiny_flux_pipeline

    return build_tiny_flux_pipeline()


def _one_line(exc: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def test_unchecked_true_cfg_loops_are_refused_by_name(flux):
    """A true-CFG class whose loop the adapter has not been checked against (Chroma, or any
    other pipeline with ``true_cfg_scale``) is refused with one line naming it; Flux itself
    is read (tests/models/test_family_matrix.py)."""
    from diffusers import FluxPipeline

    class ChromaPipeline(FluxPipeline):  # a Chroma-style loop: refused by its name
        pass

    class MyTrueCFGPipeline(FluxPipeline):  # unknown class with true_cfg_scale
        pass

    PipelineAdapter.for_pipeline(flux)
    for cls in (ChromaPipeline, MyTrueCFGPipeline):
        pipe = cls(**flux.components)
        for make in (GuidanceProbe, PipelineAdapter.for_pipeline, lambda p: PromptComposer(p, [STRUCT], [lambda t: 1.0])):
            with pytest.raises(ValueError) as exc:
                make(pipe)
            _one_line(exc, cls.__name__, "twice per step", "not supported")
        with pytest.raises(ValueError) as exc, capturing_x0(pipe):
            pass
        _one_line(exc, cls.__name__)


def test_unknown_flow_clock_is_refused(sdxl):
    """A flow-matching pipeline the adapter has no clock for is refused, not read as σ·1000."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusionXLPipeline

    class MyFlowPipeline(StableDiffusionXLPipeline):
        pass

    pipe = MyFlowPipeline(**{**sdxl.components, "scheduler": FlowMatchEulerDiscreteScheduler()})
    with pytest.raises(ValueError) as exc:
        PipelineAdapter.for_pipeline(pipe)
    _one_line(exc, "MyFlowPipeline", "clock")


@pytest.mark.parametrize("images", [1, 2])
def test_cfg_off_is_one_line_naming_the_pipeline(sdxl, images):
    """guidance_scale 1: one call of ``images`` rows per step; even batches are caught too."""
    with GuidanceProbe(sdxl), pytest.raises(ValueError) as exc:
        sdxl(STRUCT, num_images_per_prompt=images, output_type="latent", **{**_kw("sdxl"), "guidance_scale": 1.0})
    _one_line(exc, "StableDiffusionXLPipeline", "not doing CFG", "guidance_scale > 1")


def test_modular_other_guiders_and_pipelines_are_refused_by_name():
    """A Modular pipeline is read only as ``StableDiffusionXLModularPipeline`` with a
    ``ClassifierFreeGuidance`` guider (tests/models/test_family_matrix.py); another guider (APG
    combines the pair otherwise) or an unchecked modular class is refused with one line naming it."""
    from diffusers.guiders import AdaptiveProjectedGuidance
    from diffusers.modular_pipelines import StableDiffusionXLModularPipeline

    from builders import build_tiny_sdxl_modular_pipeline

    pipe = build_tiny_sdxl_modular_pipeline()
    PipelineAdapter.for_pipeline(pipe)  # the checked combination is read
    pipe.update_components(guider=AdaptiveProjectedGuidance(guidance_scale=3.0))
    for make in (GuidanceProbe, PipelineAdapter.for_pipeline, lambda p: PromptComposer(p, [STRUCT], [lambda t: 1.0])):
        with pytest.raises(ValueError) as exc:
            make(pipe)
        _one_line(exc, "StableDiffusionXLModularPipeline", "AdaptiveProjectedGuidance", "ClassifierFreeGuidance")

    class MyModularPipeline(StableDiffusionXLModularPipeline):
        pass

    pipe.__class__ = MyModularPipeline  # same components and blocks, an unchecked class
    with pytest.raises(ValueError) as exc:
        PipelineAdapter.for_pipeline(pipe)
    _one_line(exc, "MyModularPipeline", "not been checked")


def test_memo_sigma_remembers_only_the_same_unchanged_tensor():
    """The adapter's σ memo: the same tensor object is computed once; an in-place change, another
    tensor, an inference-mode tensor (no version counter) or a Python number is computed anew."""
    from reschrom.models.families import memo_sigma

    calls: list[int] = []

    def ask(t, v):
        return memo_sigma(cache, t, None, lambda: calls.append(v) or torch.tensor(float(v)))

    cache: dict = {}
    t = torch.tensor([1.0])
    ask(t, 1), ask(t, 2)
    assert calls == [1]
    t.add_(1.0)
    ask(t, 3)
    ask(t.clone(), 4)
    assert calls == [1, 3, 4]
    with torch.inference_mode():
        ti = torch.tensor([1.0])
    ask(ti, 5), ask(ti, 6), ask(0.5, 7), ask(0.5, 8)
    assert calls == [1, 3, 4, 5, 6, 7, 8]
