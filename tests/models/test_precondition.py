"""The preconditioned ε model: a UNet that learns the flow velocity inside an ordinary IFPipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reschrom.data.shapes import make_shapes
from reschrom.models import precondition as pc
from reschrom.training.loop import train
from reschrom.training.spec import TrainSpec
from rounding import assert_equal_up_to_rounding

SCHED = {"type": "ddpm", "beta_schedule": "squaredcos_cap_v2"}
TINY = {
    "block_out_channels": [8, 16],
    "attention": [False, True],
    "norm_num_groups": 4,
    "text_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32},
    "precondition": "flow_velocity",
    "clip_sample": False,
}
TRAIN = {"steps": 3, "batch_size": 4, "checkpoint_every": 100, "lr_warmup_steps": 1, "progress": False, "snr_gamma": 5.0}


def _table() -> torch.Tensor:
    return pc.alphas_cumprod_of({"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000})


@settings(max_examples=60, deadline=None)
@given(ab=st.floats(1e-6, 1 - 1e-6), seed=st.integers(0, 2**16))
def test_eps_from_velocity_recovers_eps(ab, seed):
    """ε = (x_t + √ᾱ·u)/(√ᾱ + √(1−ᾱ)) with u = ε − x0 and x_t of eq. 1, at any ᾱ."""
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    a = torch.full((2,), ab, dtype=torch.float64)
    x_t = a.sqrt().view(-1, 1, 1, 1) * x0 + (1 - a).sqrt().view(-1, 1, 1, 1) * eps
    torch.testing.assert_close(pc.eps_from_velocity(x_t, a, eps - x0), eps, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(sigma=st.floats(0.02, 0.98))
def test_timestep_of_sigma_inverts_the_table(sigma):
    """The fractional DDPM step of σ has flow time σ: ᾱ(t) = (1−σ)²/((1−σ)²+σ²)."""
    table = _table()
    t = pc.timestep_of_sigma(table, torch.tensor([sigma]))
    assert 0 <= t.item() <= 999
    ab = pc.alpha_bar_at(table, t.double())
    want = (1 - sigma) ** 2 / ((1 - sigma) ** 2 + sigma**2)
    np.testing.assert_allclose(ab.item(), want, rtol=1e-4, atol=1e-7)
    # integer steps give the table itself
    steps = torch.tensor([0.0, 17.0, 999.0])
    torch.testing.assert_close(pc.alpha_bar_at(table, steps), table[[0, 17, 999]])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x, df = make_shapes(8, 16, seed=0, texture_period=2)
    root = tmp_path_factory.mktemp("precond")
    log = train(TrainSpec("t2i", TINY, TRAIN, "squaredcos_cap_v2", SCHED, seed=0), x.float() / 127.5 - 1.0,
                root / "model", root / "ck", list(df.caption), "cpu", threads=1)
    return root / "model", log, list(df.caption)


def test_saved_pipeline_reloads_as_the_preconditioned_class(trained):
    from reschrom.models.pipelines import load_pipeline

    folder, log, _ = trained
    assert log["step"].tolist() == [1, 2, 3] and np.isfinite(log["loss"]).all()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "IFPipeline"
    assert index["unet"] == ["reschrom.models.precondition", "PreconditionedUNet2DConditionModel"]
    pipe = load_pipeline(folder, device="cpu", dtype=torch.float32)
    assert type(pipe.unet) is pc.PreconditionedUNet2DConditionModel
    assert pipe.unet.precondition["type"] == "flow_velocity"
    torch.testing.assert_close(pipe.unet.alphas_cumprod(), pipe.scheduler.alphas_cumprod.double())
    assert pipe.scheduler.config.clip_sample is False and pipe.scheduler.config.prediction_type == "epsilon"


def test_a_folder_saved_before_the_subpackages_still_loads(trained, tmp_path):
    """Folders written before the library had subpackages name ``reschrom.precondition`` in their
    ``model_index.json``: the alias module keeps them loadable, as the same class."""
    import shutil

    from reschrom.models.pipelines import load_pipeline

    folder, _, _ = trained
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    index = json.loads((old / "model_index.json").read_text())
    index["unet"] = ["reschrom.precondition", "PreconditionedUNet2DConditionModel"]
    (old / "model_index.json").write_text(json.dumps(index))
    pipe = load_pipeline(old, device="cpu", dtype=torch.float32)
    assert type(pipe.unet) is pc.PreconditionedUNet2DConditionModel


def test_forward_is_c_skip_x_plus_c_out_velocity(trained):
    """forward = (x_t + √ᾱ·F)/(√ᾱ + √(1−ᾱ)) on the first 3 channels; IF's variance channels pass."""
    from reschrom.models.pipelines import load_pipeline

    folder, _, caps = trained
    pipe = load_pipeline(folder, device="cpu", dtype=torch.float32)
    cond = pipe.encode_prompt(caps[:2], do_classifier_free_guidance=False)[0]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([100, 900])
    with torch.no_grad():
        out = pipe.unet(x, t, encoder_hidden_states=cond).sample
        raw = pipe.unet.velocity(x, t, cond)
        tup = pipe.unet(x, t, cond, return_dict=False)[0]
    ab = pipe.scheduler.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    want = (x.double() + ab.sqrt() * raw[:, :3].double()) / (ab.sqrt() + (1 - ab).sqrt())
    torch.testing.assert_close(out[:, :3].double(), want, rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 6, 16, 16) and torch.equal(out[:, 3:], raw[:, 3:])
    assert torch.equal(tup, out)
    import inspect

    from diffusers import UNet2DConditionModel

    assert inspect.signature(pipe.unet.forward) == inspect.signature(UNet2DConditionModel.forward.__get__(pipe.unet))
    # a scalar timestep means one step for the whole batch
    with torch.no_grad():
        # (batch of 2 against batch of 1: equal up to float32 rounding, tests/helpers/rounding.py)
        assert_equal_up_to_rounding(pipe.unet(x, 100, cond).sample[0], pipe.unet(x[:1], torch.tensor([100]), cond[:1]).sample[0])


def test_pipeline_samples_and_the_adapter_sees_an_eps_model(trained):
    from reschrom.models.adapters import PipelineAdapter, VPAdapter
    from reschrom.models.pipelines import load_pipeline

    folder, _, caps = trained
    pipe = load_pipeline(folder, device="cpu", dtype=torch.float32)
    ad = PipelineAdapter.for_pipeline(pipe)
    assert isinstance(ad, VPAdapter) and ad.family == "if" and ad.prediction == "epsilon"
    img = pipe(caps[:2], num_inference_steps=3, guidance_scale=3.0, output_type="pt",
               generator=torch.Generator().manual_seed(0), clean_caption=False).images
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()


def test_training_loss_is_the_velocity_error_of_the_drawn_batch(tmp_path):
    """Step 1's logged loss is ‖F_θ(x_t, t(σ), c) − (ε − x0)‖² on the batch the loop draws (its
    generator replayed here): x_t of eq. 1 at the fractional step of a logit-normal σ. With lr 0
    the saved UNet is the one that step saw."""
    from reschrom.models import flow
    from reschrom.models.pipelines import load_pipeline
    from reschrom.theory.levels import forward_diffuse

    x, df = make_shapes(8, 8, seed=1, texture_period=2)
    x = x.float() / 127.5 - 1.0
    caps = list(df.caption)
    cfg = {**TRAIN, "steps": 1, "batch_size": 4, "lr": 0.0, "lr_warmup_steps": 0, "p_uncond": 0.5}
    log = train(TrainSpec("t2i", TINY, cfg, "squaredcos_cap_v2", SCHED, seed=3), x, tmp_path / "m", tmp_path / "ck",
                caps, "cpu", threads=1)
    pipe = load_pipeline(tmp_path / "m", device="cpu", dtype=torch.float32)
    gen = torch.Generator().manual_seed(3 + 1_000_003)
    idx = torch.randint(8, (4,), generator=gen)
    noise = torch.randn((4, 3, 8, 8), generator=gen)
    sigma = flow.training_sigmas(4, 1.0, gen)
    drop = torch.rand(4, generator=gen) < 0.5
    table = pipe.unet.alphas_cumprod()
    t = pc.timestep_of_sigma(table, sigma)
    x_t = forward_diffuse(x[idx], noise, pc.alpha_bar_at(table, t).float())
    texts = ["" if d else caps[i] for i, d in zip(idx.tolist(), drop.tolist())]
    cond = flow.encode_prompts(pipe.tokenizer, pipe.text_encoder, texts)
    with torch.no_grad():
        loss = (pipe.unet.velocity(x_t, t, cond)[:, :3] - (noise - x[idx])).pow(2).mean()
        eps_loss = (pipe.unet(x_t, t, cond).sample[:, :3] - noise).pow(2).mean()
    np.testing.assert_allclose(log["loss"].iloc[0], loss.item(), rtol=1e-4)
    assert abs(log["loss"].iloc[0] - eps_loss.item()) > 1e-3  # not the plain ε error


def test_precondition_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="precondition"):
        TrainSpec("t2i", {**TINY, "objective": "flow_matching"}, TRAIN, "squaredcos_cap_v2", SCHED)
    with pytest.raises(ValueError, match="precondition"):
        TrainSpec("lowres", TINY, TRAIN, "squaredcos_cap_v2", SCHED)
    unet = pc.PreconditionedUNet2DConditionModel(block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=16,
                                                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                                 up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), sample_size=8)
    with pytest.raises(ValueError, match="reschrom_precondition"):
        _ = unet.precondition
    with pytest.raises(ValueError, match="unknown"):
        unet.set_precondition("edm", {})
    fps = {TrainSpec("t2i", t, TRAIN, "squaredcos_cap_v2", SCHED).fingerprint("d")
           for t in (TINY, {k: v for k, v in TINY.items() if k != "precondition"})}
    assert len(fps) == 2


def test_sample_images_keeps_or_forces_the_saved_clipping(trained):
    """``clip_sample=None`` samples as the folder is saved (no clipping for this model); True
    clips the guided x̂0 of DDIM and changes the images."""
    from reschrom.training.samples import sample_images

    folder, _, caps = trained
    kw = {"steps": 4, "guidance_scale": 6.0, "seed": 0}
    saved = sample_images(folder, caps[:3], **kw)
    assert torch.equal(saved, sample_images(folder, caps[:3], clip_sample=False, **kw))
    assert not torch.equal(saved, sample_images(folder, caps[:3], clip_sample=True, **kw))
