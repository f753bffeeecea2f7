"""Training (issue 3): objectives of eq. 20–24, reproducible resumable loop, saved pipelines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from reschrom.data.shapes import make_shapes
from reschrom.theory import resolution as theory
from reschrom.theory.levels import (
    compose_levels,
    forward_diffuse,
    level_input,
    level_target,
    level_time,
    residual_target,
)
from reschrom.theory.pyramid import downsample, upsample
from reschrom.theory.schedules import DiscreteSchedule
from reschrom.training.loop import NonFiniteLossError, train
from reschrom.training.spec import TrainSpec, min_snr_weights, v_target

SCHED = {"type": "ddpm", "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
TINY = {
    "block_out_channels": [8, 16],
    "attention": [False, True],
    "norm_num_groups": 4,
    "text_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32},
}
TRAIN = {"steps": 6, "batch_size": 4, "checkpoint_every": 3, "lr_warmup_steps": 2, "progress": False, "snr_gamma": 5.0}


@pytest.fixture(scope="module")
def shapes16():
    x, df = make_shapes(16, 16, seed=0, texture_period=2)
    return x.float() / 127.5 - 1.0, list(df.caption)


# ------------------------------------------------------------------ objectives


@given(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_residual_target_has_zero_coarse_projection(batch, k, seed):
    eps = torch.randn(batch, 3, 2**k, 2**k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = residual_target(eps)
    assert downsample(r, 1).abs().max() < 1e-12  # D[ε − UDε] = Dε − DUDε = 0
    torch.testing.assert_close(r + upsample(downsample(eps, 1), 1), eps)


@given(st.integers(1, 4), st.integers(0, 2**31 - 1), st.data())
def test_level_targets_telescope_to_eps(k, seed, data):
    M = data.draw(st.integers(1, k + 1))
    eps = torch.randn(2, 3, 2**k, 2**k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    targets = [level_target(eps, m, M) for m in range(M)]
    for m, t in enumerate(targets):
        assert t.shape[-1] == 2**k // 2**m
        if m < M - 1:  # finer levels carry no coarser content
            assert downsample(t, 1).abs().max() < 1e-12
    torch.testing.assert_close(compose_levels(targets), eps)  # eq. 24


def test_level_target_unit_variance_and_residual_is_level_zero():
    eps = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # the coarsest target 2^m D^m ε is white with unit variance
    assert abs(level_target(eps, 2, 3).var().item() - 1.0) < 0.05
    torch.testing.assert_close(level_target(eps, 0, 2), residual_target(eps))


def test_level_input_is_a_diffusion_sample_at_tau():
    """λ^(m) D^m x_t = √ᾱ_τ D^m x0 + √(1−ᾱ_τ) 2^m D^m ε, with ᾱ_τ read off the step τ_m."""
    from diffusers import DDPMScheduler

    ac = DDPMScheduler(beta_schedule="linear").alphas_cumprod
    schedule = DiscreteSchedule(ac.double().numpy())
    t = torch.tensor([100, 400, 700, 999])
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1, torch.randn(4, 3, 16, 16, generator=g)
    for m in (1, 2):
        x_m = level_input(forward_diffuse(x0, eps, ac[t]), ac[t], m)
        a_tau = torch.as_tensor(theory.alpha_bar_tau(ac[t].double().numpy(), m), dtype=torch.float32).view(-1, 1, 1, 1)
        expect = a_tau.sqrt() * downsample(x0, m) + (1 - a_tau).sqrt() * 2**m * downsample(eps, m)
        torch.testing.assert_close(x_m, expect, atol=1e-5, rtol=1e-5)
        tau = level_time(schedule, None, t, m)
        assert (tau < t).all() and (tau >= 0).all()
        # ᾱ at the fractional step τ (log-SNR interpolation) equals ᾱ_τ of eq. 16
        lo = tau.floor().long().clamp(max=998)
        w = (tau - lo).double()
        ls = torch.log(ac.double() / (1 - ac.double()))
        ab = torch.sigmoid(ls[lo] * (1 - w) + ls[lo + 1] * w)
        np.testing.assert_allclose(ab.numpy(), a_tau.view(-1).double().numpy(), rtol=1e-6)
    torch.testing.assert_close(level_time(schedule, None, t, 0), t.float())


def test_min_snr_weights():
    ab = torch.tensor([0.999, 0.9, 5 / 6, 0.5, 0.01])
    w = min_snr_weights(ab, 5.0)
    snr = ab / (1 - ab)
    torch.testing.assert_close(w, torch.where(snr > 5, 5 / snr, torch.ones_like(snr)))


@given(st.floats(1e-4, 0.9999), st.integers(0, 2**31 - 1))
def test_v_target_gives_eps_and_x0_back(ab, seed):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1, torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    a = torch.full((2,), ab, dtype=torch.float64)
    x_t = forward_diffuse(x0, eps, a)
    v = v_target(x0, eps, a)
    # ε = √ᾱ v + √(1−ᾱ) x_t and x0 = √ᾱ x_t − √(1−ᾱ) v (what the VP adapter and eq. 7 use)
    torch.testing.assert_close(ab**0.5 * v + (1 - ab) ** 0.5 * x_t, eps)
    torch.testing.assert_close(ab**0.5 * x_t - (1 - ab) ** 0.5 * v, x0)


def test_min_snr_weights_v_prediction():
    ab = torch.tensor([0.999, 0.9, 5 / 6, 0.5, 0.01], dtype=torch.float64)
    snr = ab / (1 - ab)
    w = min_snr_weights(ab, 5.0, "v_prediction").double()
    # the same weight on the x0 error as for ε: ε-loss = SNR·x0-loss, v-loss = (SNR+1)·x0-loss
    torch.testing.assert_close(w * (snr + 1), min_snr_weights(ab, 5.0).double() * snr, rtol=1e-6, atol=0)


def test_v_prediction_t2i_folder_carries_its_prediction_type(tmp_path, shapes16):
    from diffusers import DiffusionPipeline

    from reschrom.models.adapters import PipelineAdapter

    x, caps = shapes16
    cfg = {**TINY, "objective": "v_prediction", "addition_embed_type": "text"}
    spec = TrainSpec("t2i", cfg, {**TRAIN, "steps": 2}, "linear", SCHED, seed=0)
    train(spec, x, tmp_path / "t2i", tmp_path / "ck", caps, "cpu", threads=1)
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "t2i")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.unet.config.addition_embed_type == "text"
    assert PipelineAdapter.for_pipeline(pipe).prediction == "v_prediction"
    eps_spec = TrainSpec("t2i", TINY, {**TRAIN, "steps": 2}, "linear", SCHED, seed=0)
    assert spec.fingerprint("d") != eps_spec.fingerprint("d")
    with pytest.raises(ValueError, match="models.lowres.objective: v_prediction is implemented for t2i only"):
        TrainSpec("lowres", {**TINY, "objective": "v_prediction"}, TRAIN, "linear", SCHED)


# ------------------------------------------------------------------ the loop


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(folder.glob("*/*.safetensors")):
        for k, v in load_file(str(f)).items():
            out[f"{f.parent.name}/{k}"] = v
    return out


@pytest.mark.parametrize("kind,level", [("level", 1), ("t2i", 0)])
def test_resume_is_bitwise_identical(tmp_path, shapes16, kind, level):
    x, caps = shapes16
    caps = caps if kind == "t2i" else None
    spec = TrainSpec(kind, TINY, TRAIN, "linear", SCHED, level=level, num_levels=2, seed=0)
    log_a = train(spec, x, tmp_path / "a", tmp_path / "ck_a", caps, "cpu", threads=1)
    assert train(spec, x, tmp_path / "b", tmp_path / "ck_b", caps, "cpu", stop_after=3, threads=1) is None
    assert not (tmp_path / "b").exists() and (tmp_path / "ck_b" / "step_00000003" / "optimizer.pt").is_file()
    log_b = train(spec, x, tmp_path / "b", tmp_path / "ck_b", caps, "cpu", threads=1)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and len(wa) > 10
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert log_a["loss"].tolist() == log_b["loss"].tolist() and log_b["step"].tolist() == list(range(1, 7))
    # the saved weights are the EMA, not the last iterate
    raw = load_file(str(tmp_path / "ck_a" / "step_00000006" / "model.safetensors"))
    ema = load_file(str(tmp_path / "ck_a" / "step_00000006" / "ema.safetensors"))
    k = next(n for n in raw if n.startswith("unet.conv_in.weight"))
    assert torch.equal(wa["unet/conv_in.weight"], ema[k]) and not torch.equal(raw[k], ema[k])
    # a different configuration does not resume from these checkpoints
    other = TrainSpec(kind, TINY, {**TRAIN, "lr": 5e-4}, "linear", SCHED, level=level, num_levels=2, seed=0)
    log_c = train(other, x, tmp_path / "c", tmp_path / "ck_b", caps, "cpu", threads=1)
    assert log_c["step"].tolist() == list(range(1, 7)) and log_c["loss"].iloc[0] == log_a["loss"].iloc[0]


def test_t2i_folder_loads_as_ifpipeline_and_generates(tmp_path, shapes16):
    from diffusers import DiffusionPipeline, IFPipeline

    x, caps = shapes16
    spec = TrainSpec("t2i", TINY, {**TRAIN, "steps": 2}, "linear", SCHED, seed=0)
    train(spec, x, tmp_path / "t2i", tmp_path / "ck", caps, "cpu", threads=1)
    assert (tmp_path / "t2i" / "training_log.parquet").is_file()
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "t2i")
    assert isinstance(pipe, IFPipeline)
    pipe.set_progress_bar_config(disable=True)
    ids = pipe.tokenizer([caps[0], ""]).input_ids
    assert ids[1] == [1] and ids[0][-1] == 1 and 2 not in ids[0]  # </s> appended, known words only
    out = pipe([caps[0], caps[1]], num_inference_steps=2,
               guidance_scale=3.0, output_type="pt", clean_caption=False,
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_unconditional_folder_loads_as_ddpm_pipeline(tmp_path, shapes16):
    from diffusers import DDPMPipeline, DiffusionPipeline

    x, _ = shapes16
    spec = TrainSpec("lowres", TINY, {**TRAIN, "steps": 1}, "linear", SCHED, seed=0)
    train(spec, downsample(x, 1), tmp_path / "m", tmp_path / "ck", None, "cpu", threads=1)
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "m")
    assert isinstance(pipe, DDPMPipeline) and pipe.unet.config.sample_size == 8


def test_bad_inputs_are_named(tmp_path, shapes16):
    x, _ = shapes16
    with pytest.raises(ValueError, match="batch size 32"):
        train(TrainSpec("residual", TINY, {**TRAIN, "batch_size": 32}, "linear", SCHED), x, tmp_path / "o", tmp_path / "c")
    with pytest.raises(ValueError, match="power of two"):
        train(TrainSpec("residual", TINY, TRAIN, "linear", SCHED), x[..., :12, :12], tmp_path / "o", tmp_path / "c")
    with pytest.raises(ValueError, match="no DDPM training scheduler"):
        train(TrainSpec("residual", TINY, TRAIN, "edm", {"type": "edm"}), x, tmp_path / "o", tmp_path / "c")
    with pytest.raises(ValueError, match="num_levels"):
        TrainSpec("level", TINY, TRAIN, "linear", SCHED, level=2, num_levels=2)


def test_non_finite_loss_stops_with_the_step(tmp_path, shapes16):
    x, _ = shapes16
    cfg = {**TRAIN, "lr": 1e30, "lr_warmup_steps": 0, "max_grad_norm": 0}
    with pytest.raises(NonFiniteLossError, match=r"at step \d+"):
        train(TrainSpec("residual", TINY, cfg, "linear", SCHED), x, tmp_path / "o", tmp_path / "c", threads=1)
    assert not (tmp_path / "o").exists()


_CHILD = """
import sys, torch
from reschrom.data import make_shapes
from reschrom.training import TrainSpec, train
x, _ = make_shapes(16, 16, seed=0, texture_period=2)
spec = TrainSpec("residual", {tiny!r}, {train!r}, "linear", {sched!r}, seed=0)
train(spec, x.float() / 127.5 - 1, sys.argv[1], sys.argv[2], None, "cpu", threads=1)
"""


@pytest.mark.slow
def test_killed_subprocess_resumes_bitwise(tmp_path, shapes16):
    """SIGKILL a training process after its first checkpoint; resuming equals an uninterrupted run."""
    x, _ = shapes16
    cfg = {**TRAIN, "steps": 60, "checkpoint_every": 2}
    code = _CHILD.format(tiny=TINY, train=cfg, sched=SCHED)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "k"), str(tmp_path / "ck_k")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((tmp_path / "ck_k").glob("step_*")):
        time.sleep(0.02)
    assert proc.poll() is None, f"child ended early: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "k").exists()
    spec = TrainSpec("residual", TINY, cfg, "linear", SCHED, seed=0)
    log_k = train(spec, x, tmp_path / "k", tmp_path / "ck_k", None, "cpu", threads=1)
    train(spec, x, tmp_path / "ref", tmp_path / "ck_ref", None, "cpu", threads=1)
    wk, wr = _weights(tmp_path / "k"), _weights(tmp_path / "ref")
    assert all(torch.equal(wk[k], wr[k]) for k in wr)
    assert log_k["step"].tolist() == list(range(1, 61))


def test_word_tokenizer():
    from reschrom.models.builders import build_word_tokenizer

    tok = build_word_tokenizer(["A red circle, with stripes", "a blue square"])
    ids = tok(["a red circle", "a green circle", ""]).input_ids
    assert ids[2] == [1]
    assert ids[1][1] == 2  # "green" is unknown
    assert ids[0][:-1] == [tok.convert_tokens_to_ids(w) for w in ["a", "red", "circle"]]
    assert build_word_tokenizer(["a blue square", "A red circle, with stripes"]).get_vocab() == tok.get_vocab()


def test_config_errors_are_one_line():
    import copy

    import yaml

    from reschrom.config import ConfigError, validate_config

    root = Path(__file__).resolve().parents[2]
    base = yaml.safe_load((root / "config.yaml").read_text())
    cases = [
        (lambda c: c["data"].update(kind="imagefolder"), "data.path"),
        (lambda c: c["data"].update(kind="hf"), "data.hf.name"),
        (lambda c: c["training"].update(num_levels=9), "training.num_levels"),
        (lambda c: c["training"].update(schedule="edm"), "training.schedule"),
        (lambda c: c["training"].update(schedule="nope"), "training.schedule"),
        (lambda c: c["data"].update(resolution=24), "data.resolution"),
        (lambda c: c["models"]["toy"].update(level=4), "models.toy.level"),
        (lambda c: c["upscale"]["models"].update(lowres="toy"), "upscale.models.lowres"),
        (lambda c: c["models"]["lowres"]["train"].update(batch_size=10**6), "models.lowres"),
    ]
    for mutate, key in cases:
        cfg = copy.deepcopy(base)
        mutate(cfg)
        with pytest.raises(ConfigError) as e:
            validate_config(cfg, root / "schemas" / "config.schema.yaml")
        assert key in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_sample_images_reads_flow_folders_through_the_project_ddim(tmp_path, shapes16):
    from reschrom.measure.metrics import caption_accuracy
    from reschrom.training.samples import sample_images

    x, caps = shapes16
    cfg = {**TINY, "objective": "flow_matching", "addition_embed_type": "text"}
    spec = TrainSpec("t2i", cfg, {**TRAIN, "steps": 2, "snr_gamma": None}, "linear", SCHED, seed=0)
    train(spec, x, tmp_path / "flow", tmp_path / "ck", caps, "cpu", threads=1)
    a = sample_images(tmp_path / "flow", caps[:3], steps=3, guidance_scale=2.0, seed=1, batch_size=2)
    b = sample_images(tmp_path / "flow", caps[:3], steps=3, guidance_scale=2.0, seed=1, batch_size=2)
    assert a.shape == (3, 3, 16, 16) and torch.isfinite(a).all() and a.abs().max() <= 1
    assert torch.equal(a, b)  # seeded
    assert not torch.equal(a, sample_images(tmp_path / "flow", caps[:3], steps=3, guidance_scale=2.0, seed=2, batch_size=2))
    acc = caption_accuracy(a, caps[:3])
    assert list(acc.columns[:3]) == ["prompt", "colour", "shape"] and len(acc) == 3
    with pytest.raises(ValueError, match="one image per prompt"):
        sample_images(tmp_path / "flow", None, n=2, steps=2)
