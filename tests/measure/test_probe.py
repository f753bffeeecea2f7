"""The guidance probe on tiny IF and SD pipelines and on the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from builders import build_tiny_if_pipeline, build_tiny_sd_pipeline
from reschrom.measure.probe import GuidanceProbe, ProbeResult, guidance_frame, save_tensors
from reschrom.models.oracle import build_oracle_pipeline
from reschrom.theory import pyramid
from rounding import assert_equal_up_to_rounding

PROMPT = "a teddy bear playing the guitar"


@pytest.fixture(scope="module")
def if_pipe():
    return build_tiny_if_pipeline(resolution=8, seed=0)


@pytest.fixture(scope="module")
def sd_pipe():
    return build_tiny_sd_pipeline(resolution=16, seed=0)


def _call(pipe, n=2, seed=0, scale=5.0):
    kw = {"clean_caption": False} if type(pipe).__name__ == "IFPipeline" else {}
    return pipe(PROMPT, num_inference_steps=3, guidance_scale=scale, num_images_per_prompt=n,
                generator=torch.Generator().manual_seed(seed), output_type="pt", **kw).images


@pytest.mark.parametrize("name", ["if_pipe", "sd_pipe"])
def test_images_bitwise_identical_with_probe(name, request):
    pipe = request.getfixturevalue(name)
    plain = _call(pipe)
    with GuidanceProbe(pipe, keep_tensors=True) as probe:
        probed = _call(pipe)
    assert torch.equal(plain, probed)
    assert not pipe.unet._forward_hooks  # detached
    assert torch.equal(plain, _call(pipe))
    assert probe.result().num_steps == 3


def _embeds(pipe, n):
    if type(pipe).__name__ == "IFPipeline":
        pos, neg = pipe.encode_prompt(PROMPT, True, num_images_per_prompt=n, device="cpu", clean_caption=False)
    else:
        pos, neg = pipe.encode_prompt(PROMPT, "cpu", n, True)
    return torch.cat([neg, pos])


@pytest.mark.parametrize("name", ["if_pipe", "sd_pipe"])
def test_probe_g_matches_independent_recomputation(name, request):
    pipe = request.getfixturevalue(name)
    n = 2
    with GuidanceProbe(pipe, keep_tensors=True, tensor_dtype=torch.float32) as probe:
        _call(pipe, n=n)
    res = probe.result()
    emb = _embeds(pipe, n)
    C = pipe.unet.config.in_channels
    for s, t in enumerate(res.timesteps):
        x = res.tensors["x_t"][s]
        x_in = pipe.scheduler.scale_model_input(torch.cat([x, x]), int(t))
        with torch.no_grad():
            out = pipe.unet(x_in, int(t), encoder_hidden_states=emb).sample[:, :C]
        u, c = out.chunk(2)
        # an independent call on the same batch: equal up to float32 rounding (tests/helpers/rounding.py)
        assert_equal_up_to_rounding(res.tensors["eps_uncond"][s], u)
        assert_equal_up_to_rounding(res.tensors["eps_cond"][s], c)
        g = c - u
        e = pyramid.band_energies(g).double().numpy()
        # ‖g^(m)‖² of a cancellation g = c − u: rounding on the scale of 4(‖c‖² + ‖u‖²) (tests/helpers/rounding.py)
        scale = 4 * (c.double().pow(2).sum((1, 2, 3)) + u.double().pow(2).sum((1, 2, 3)))
        assert_equal_up_to_rounding(res.energies[s, 0], e, scale_of=(scale,))
        # bands add up to ‖g‖² (eq. 19: orthogonal bands)
        np.testing.assert_allclose(res.energies[s, 0].sum(-1), g.double().pow(2).sum((1, 2, 3)).numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", ["if_pipe", "sd_pipe"])
def test_relative_energies_sum_to_one_every_step(name, request):
    pipe = request.getfixturevalue(name)
    with GuidanceProbe(pipe) as probe:
        _call(pipe, n=3)
    r = probe.result().relative()
    assert r.shape[:2] == (3, 3)
    np.testing.assert_allclose(r.sum(-1), 1.0, rtol=1e-12)
    assert (r >= 0).all()


def test_probe_rejects_runs_without_cfg(if_pipe):
    with GuidanceProbe(if_pipe), pytest.raises(ValueError, match="not doing CFG"):
        _call(if_pipe, n=1, scale=1.0)
    assert not if_pipe.unet._forward_hooks


def test_probe_on_oracle_and_frame_contract(tmp_path):
    pipe = build_oracle_pipeline(resolution=8)
    with GuidanceProbe(pipe, keep_tensors=True) as probe:
        pipe("a disc", num_inference_steps=4, guidance_scale=3.0, num_images_per_prompt=2,
             generator=torch.Generator().manual_seed(0))
    res = probe.result()
    assert res.energies.shape == (4, 3, 2, 4)
    df = guidance_frame(res, model="oracle", prompt_id="a-disc-x", prompt="a disc", seed=7,
                        alphas_cumprod=pipe.scheduler.alphas_cumprod.numpy())
    assert len(df) == 4 * 2 * 4
    assert set(df["resolution"]) == {1, 2, 4, 8}
    assert df["t_frac"].between(0, 1).all() and (df["seed"] == 7).all()
    save_tensors(res, tmp_path / "d.safetensors")
    from safetensors.torch import load_file

    d = load_file(str(tmp_path / "d.safetensors"))
    assert d["eps_cond"].dtype == torch.float16 and d["eps_cond"].shape == (4, 2, 3, 8, 8)


@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_relative_rows_sum_to_one_property(B, S, seed):
    rng = np.random.default_rng(seed)
    e = rng.exponential(size=(S, 3, B, 5))
    r = ProbeResult(np.arange(S, dtype=float), e).relative()
    np.testing.assert_allclose(r.sum(-1), 1.0, rtol=1e-12)
