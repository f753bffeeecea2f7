"""The level maths of reschrom.theory.levels (eq. 1, 7, 14–16, 21, 23, 24) on per-sample signal levels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reschrom.theory import levels
from reschrom.theory import resolution as theory
from reschrom.theory.pyramid import downsample


def _draw(seed: int, shape=(3, 3, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("alpha_bar", [0.3, np.array([0.1, 0.5, 0.95]), torch.tensor([0.1, 0.5, 0.95], dtype=torch.float64)])
def test_eq7_inverts_eq1_per_sample_or_scalar(alpha_bar):
    x0, eps = _draw(0)
    x_t = levels.forward_diffuse(x0, eps, alpha_bar)
    torch.testing.assert_close(levels.x0_from_eps(x_t, eps, alpha_bar), x0)
    torch.testing.assert_close(levels.eps_from_x0(x_t, x0, alpha_bar), eps)
    a = torch.as_tensor(alpha_bar, dtype=torch.float64).reshape(-1, 1, 1, 1)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(levels.posterior_mean(x_t, v, alpha_bar, "v_prediction"), x0)
    torch.testing.assert_close(levels.posterior_mean(x_t, eps, alpha_bar), x0)
    assert levels.posterior_mean(x_t, x0, alpha_bar, "sample") is x0
    with pytest.raises(ValueError, match="prediction_type"):
        levels.posterior_mean(x_t, eps, alpha_bar, "flow")


def test_level_input_is_level_noise_at_tau_and_ablation():
    x0, eps = _draw(1)
    a = np.array([0.05, 0.4, 0.9])
    x_t = levels.forward_diffuse(x0, eps, a)
    for m in (1, 2, 3):
        a_tau = torch.as_tensor(theory.alpha_bar_tau(a, m)).reshape(-1, 1, 1, 1)
        want = a_tau.sqrt() * downsample(x0, m) + (1 - a_tau).sqrt() * levels.level_noise(eps, m)
        torch.testing.assert_close(levels.level_input(x_t, a, m), want)
        torch.testing.assert_close(levels.level_input(x_t, torch.as_tensor(a), m), want)
        torch.testing.assert_close(levels.level_input(x_t, a, m, intensity_rescaling=False), downsample(x_t, m))
    assert levels.level_input(x_t, a, 0) is x_t
    with pytest.raises(ValueError, match="level 2"):
        levels.level_target(eps, 2, 2)
