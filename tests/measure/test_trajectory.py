"""x̂0 along sampling (paper Fig. 1, eq. 7) of a ``kind: module`` model through the one entry point
:func:`reschrom.measure.trajectory.x0_spectra` (the pipeline path: tests/theory/test_spectra.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reschrom.measure.trajectory import SPECTRA_COLUMNS, spectra_frame, x0_spectra
from reschrom.sampling.cfg import model_noise, sample_cfg
from rounding import assert_equal_up_to_rounding

PROMPTS = ["a red disc", "a blue square"]


@pytest.fixture(scope="module")
def flow_model():
    """The rectified-flow toy (untrained, 8×8) wrapped as a ``kind: module`` model."""
    from reschrom.models.builders import build_flow_t2i, build_word_tokenizer
    from reschrom.models.module import ModuleModel

    torch.manual_seed(0)
    cfg = {"block_out_channels": [8, 16], "attention": [False, True], "norm_num_groups": 4,
           "text_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32}, "shift": 3.0}
    obj = build_flow_t2i(build_word_tokenizer(PROMPTS), cfg, sample_size=8)
    return ModuleModel.from_object("flow", obj, device="cpu", dtype=torch.float32)


def test_x0_spectra_takes_a_module_model(flow_model):
    den = flow_model
    steps, n = 6, 3
    res = x0_spectra(den, PROMPTS, n_samples=n, batch_size=2, seed=4, num_inference_steps=steps,
                     guidance_scale=3.0, n_snapshots=3)
    assert res.power.shape == (steps - 1, 5) and np.isfinite(res.power).all() and (res.power >= 0).all()
    assert res.n_samples == n
    frac = res.snapshots["t_frac"].numpy()
    assert len(frac) == steps and np.all(np.diff(frac) < 0)
    np.testing.assert_array_equal(res.timesteps, np.asarray(den.schedule.native_t(frac), dtype=np.float64))
    assert res.snapshots["steps"].tolist() == [0, 2, 5]
    assert res.snapshots["x0"].shape == res.snapshots["x_t"].shape == (3, 3, 8, 8)
    # the last x̂0 (eq. 7 of the guided ε at the last step) is the sample of the first batch's
    # first image, drawn by the project's DDIM from the x_T of seed 4
    x0 = sample_cfg(den, [den.encode(PROMPTS[:2])], den.null_condition(2), guidance_scale=3.0,
                    num_inference_steps=steps, x_T=model_noise(den, 2, 4, den.device))
    assert_equal_up_to_rounding(res.snapshots["x0"][-1], x0[0].float())
    df = spectra_frame(res, "flow", t_frac=frac)
    assert list(df.columns) == SPECTRA_COLUMNS and len(df) == (steps - 1) * 5


def test_x0_spectra_refuses_another_device_for_a_module_model(flow_model):
    with pytest.raises(ValueError, match="not the model's"):
        x0_spectra(flow_model, PROMPTS, n_samples=1, batch_size=1, num_inference_steps=2, device="meta")
