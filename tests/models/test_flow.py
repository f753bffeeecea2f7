"""The rectified-flow text-to-image toy model: training objective, folder, denoiser contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from reschrom.data.shapes import make_shapes
from reschrom.models import flow
from reschrom.models.contract import alpha_bar_from_flow_sigma
from reschrom.theory.schedules import FlowMatchingSchedule
from reschrom.training.loop import train, train_from_files
from reschrom.training.spec import TrainSpec

SCHED = {"type": "ddpm", "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
TINY_FLOW = {
    "block_out_channels": [8, 16],
    "attention": [False, True],
    "norm_num_groups": 4,
    "text_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32},
    "objective": "flow_matching",
    "shift": 3.0,
}
TRAIN = {"steps": 4, "batch_size": 4, "checkpoint_every": 2, "lr_warmup_steps": 1, "progress": False, "snr_gamma": 5.0}


@pytest.fixture(scope="module")
def shapes16():
    x, df = make_shapes(16, 16, seed=0, texture_period=2)
    return x.float() / 127.5 - 1.0, list(df.caption)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes16):
    """A 4-step flow model trained through the workflow's entry point."""
    import pandas as pd

    from reschrom.data.dataset import save_level
    from reschrom.io import write_parquet

    x, caps = shapes16
    root = tmp_path_factory.mktemp("flow")
    save_level(x, root / "level_0.safetensors")
    write_parquet(pd.DataFrame({"index": range(len(caps)), "caption": caps}), root / "captions.parquet")
    log = train_from_files("t2i", root / "level_0.safetensors", root / "model", root / "ck", TINY_FLOW, TRAIN,
                           "linear", SCHED, captions=root / "captions.parquet", device="cpu", threads=1)
    return root / "model", log


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {f"{f.parent.name}/{k}": v for f in sorted(folder.glob("*/*.safetensors")) for k, v in load_file(str(f)).items()}


def test_time_shift_matches_the_schedule_and_diffusers():
    from diffusers import FlowMatchEulerDiscreteScheduler

    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    np.testing.assert_allclose(flow.time_shift(s, 3.0).numpy(), FlowMatchingSchedule(3.0).native_t(s.numpy()))
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    base = torch.linspace(1.0, 1 / 1000, 1000, dtype=torch.float64)  # diffusers' unshifted training sigmas
    torch.testing.assert_close(sched.sigmas.double(), flow.time_shift(base, 3.0), rtol=1e-5, atol=1e-6)
    sig = flow.training_sigmas(20000, 1.0, torch.Generator().manual_seed(0))
    assert 0 < sig.min() and sig.max() < 1 and abs(sig.median().item() - 0.5) < 0.02  # logit-normal
    assert flow.training_sigmas(20000, 3.0, torch.Generator().manual_seed(0)).median() > 0.7  # towards noise


def test_folder_layout_and_loading(trained):
    folder, log = trained
    assert log["step"].tolist() == [1, 2, 3, 4] and np.isfinite(log["loss"]).all()
    for sub in flow.COMPONENTS:
        assert (folder / sub).is_dir()
    assert (folder / "training_log.parquet").is_file()
    assert not (folder / "model_index.json").exists()
    assert json.loads((folder / "reschrom_model.json").read_text()) == {"class": "FlowTextToImage", "objective": "flow_matching"}
    sched_cfg = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert sched_cfg["_class_name"] == "FlowMatchEulerDiscreteScheduler" and sched_cfg["shift"] == 3.0
    model = flow.load_flow_t2i(folder)
    assert isinstance(model, flow.FlowTextToImage) and not model.unet.training
    assert model.resolution == 16 and model.channels == 3 and model.unet.config.out_channels == 3
    assert model.schedule == {"type": "flow_matching", "shift": 3.0}
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    half = flow.load_flow_t2i(folder, device="cpu", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.text_encoder.dtype == torch.bfloat16
    x = torch.randn(2, 3, 16, 16)
    assert half.eps(x, torch.tensor([0.3, 0.7]), half.encode(["a", "b"])).dtype == torch.float32
    with pytest.raises(ValueError, match="FlowTextToImage"):
        (folder / "reschrom_model.json").rename(folder / "moved.json")
        try:
            flow.load_flow_t2i(folder)
        finally:
            (folder / "moved.json").rename(folder / "reschrom_model.json")


def test_denoiser_contract_and_eps_from_velocity(trained, shapes16):
    folder, _ = trained
    _, caps = shapes16
    model = flow.load_flow_t2i(folder)
    cond = model.encode([caps[0], caps[1]])
    assert cond.shape == (2, 77, 16)
    null = model.null_condition(3)
    assert null.shape == (3, 77, 16)
    torch.testing.assert_close(null, model.encode([""] * 3))
    # tokenised as in training: the same ids the training bundle sees
    tok = model.tokenizer([caps[0]], padding="max_length", max_length=77, return_tensors="pt")
    assert tok.input_ids.shape == (1, 77) and tok.input_ids[0, 0] != 0

    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 3, 16, 16, generator=g)
    ab = torch.tensor([0.2, 0.9])
    e = model.eps(x_t, ab, cond)
    assert e.shape == x_t.shape and torch.isfinite(e).all()
    # closed form: σ with ᾱ = (1−σ)²/((1−σ)²+σ²), x_flow = x_t(1−σ)/√ᾱ, ε = x_flow + (1−σ)u
    sigma = torch.sqrt(1 - ab) / (torch.sqrt(ab) + torch.sqrt(1 - ab))
    torch.testing.assert_close(alpha_bar_from_flow_sigma(sigma), ab)
    s = sigma.view(-1, 1, 1, 1)
    x_flow = x_t * (1 - s) / ab.sqrt().view(-1, 1, 1, 1)
    with torch.no_grad():
        u = model.unet(x_flow, sigma * 1000, encoder_hidden_states=cond).sample[:, :3]
    torch.testing.assert_close(e, x_flow + (1 - s) * u)


def test_resume_is_bitwise_identical(tmp_path, shapes16):
    x, caps = shapes16
    spec = TrainSpec("t2i", TINY_FLOW, TRAIN, "linear", SCHED, seed=0)
    log_a = train(spec, x, tmp_path / "a", tmp_path / "ck_a", caps, "cpu", threads=1)
    assert train(spec, x, tmp_path / "b", tmp_path / "ck_b", caps, "cpu", stop_after=2, threads=1) is None
    log_b = train(spec, x, tmp_path / "b", tmp_path / "ck_b", caps, "cpu", threads=1)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and len(wa) > 10
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert log_a["loss"].tolist() == log_b["loss"].tolist()
    # objective and shift are part of the fingerprint: another shift does not resume these
    eps_fp = TrainSpec("t2i", {**TINY_FLOW, "objective": "epsilon"}, TRAIN, "linear", SCHED).fingerprint("d")
    fps = {spec.fingerprint("d"), TrainSpec("t2i", {**TINY_FLOW, "shift": 1.0}, TRAIN, "linear", SCHED).fingerprint("d"), eps_fp}
    assert len(fps) == 3


def test_flow_loss_decreases_on_a_constant_image(tmp_path):
    """One constant image: the velocity ε − x0 has a learnable mean (−x0), so the loss drops."""
    x = torch.full((8, 3, 8, 8), -0.8)
    cfg = {**TRAIN, "steps": 40, "batch_size": 8, "lr": 3e-3, "lr_warmup_steps": 0, "lr_schedule": "constant",
           "checkpoint_every": 1000, "ema_decay": 0.0}
    log = train(TrainSpec("t2i", TINY_FLOW, cfg, "linear", SCHED, seed=0), x, tmp_path / "m", tmp_path / "ck",
                ["a"] * 8, "cpu", threads=1)
    first, last = log["loss"].iloc[:8].mean(), log["loss"].iloc[-8:].mean()
    assert last < 0.9 * first, (first, last)


def test_bad_objective_is_named():
    with pytest.raises(ValueError, match="objective"):
        TrainSpec("t2i", {**TINY_FLOW, "objective": "v"}, TRAIN, "linear", SCHED)
    with pytest.raises(ValueError, match="t2i only"):
        TrainSpec("residual", TINY_FLOW, TRAIN, "linear", SCHED)
    with pytest.raises(ValueError, match="shift"):
        TrainSpec("t2i", {**TINY_FLOW, "shift": 0}, TRAIN, "linear", SCHED)
