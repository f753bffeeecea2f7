"""Tolerances for float32 results that are the same mathematics computed by different kernels.

Two kinds of comparison appear in this suite, and they are kept apart on purpose:

* **Bitwise** (``torch.equal``, ``rtol=0, atol=0``): the *same* computation run twice — a probed
  against an unprobed call of the same batch, a rerun against a run, a resumed against an
  uninterrupted training on the CPU. Any difference there is a bug.
* **Equal up to float32 rounding** (this module): the same mathematics through a different
  reduction order — a prompt alone against the same prompt inside a larger batch, one thread
  against two, a hook that widens the batch, a diffusers reference against our own vectorised
  code. BLAS and oneDNN pick their kernels (and so the order of every sum) by batch size, thread
  count and CPU, so these agree only to a few units in the last place (ulp) of the values they
  reduce. How many depends on the CPU; a fixed ``atol=1e-6`` that one machine happens to meet
  fails on another.

The tolerance here is **relative to the scale of the compared values**: ``ulps`` float32 machine
epsilons (2^-23) times the largest magnitude among the reference tensors. The default 2^10 ulps
(≈ 1.2e-4 of the scale) covers the reduction-order rounding of the tiny networks of the tests
(a dot product of length K in float32 is off by at most K·ε·Σ|a·b| and typically √K·ε of it; the
tests' networks reduce over K ≤ 2^9 per layer through a few layers and sampler steps) and is
orders of magnitude below what a real error produces: a swapped batch row, a wrong prompt or a
wrong time step changes the result by O(1) of its scale.

Where the compared quantity is derived from the rounded values by cancellation (the CFG term
g = ε_c − ε_u, its band energies ‖g^(m)‖²), the scale is that of the inputs, not of the result:
pass those inputs as ``scale_of``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

F32_EPS = float(np.finfo(np.float32).eps)  # 2^-23: one unit in the last place of 1.0
ROUNDING_ULPS = 2**10


def _max_abs(x: Any) -> float:
    if isinstance(x, torch.Tensor):
        return float(x.detach().abs().max()) if x.numel() else 0.0
    a = np.asarray(x, dtype=np.float64)
    return float(np.abs(a).max()) if a.size else 0.0


def float32_atol(*scale_of: Any, ulps: float = ROUNDING_ULPS) -> float:
    """Absolute tolerance for float32 rounding: ``ulps`` · 2^-23 · max |value| over ``scale_of``."""
    scale = max((_max_abs(x) for x in scale_of), default=0.0)
    return ulps * F32_EPS * scale


def assert_equal_up_to_rounding(actual: Any, expected: Any, *, scale_of: tuple = (), ulps: float = ROUNDING_ULPS,
                                msg: str = "") -> None:
    """Assert ``actual`` equals ``expected`` up to float32 rounding of values of ``expected``'s scale
    (or of ``scale_of``, when the compared values come out of a cancellation)."""
    atol = float32_atol(*(scale_of or (expected,)), ulps=ulps)
    if isinstance(actual, torch.Tensor) or isinstance(expected, torch.Tensor):
        torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), rtol=0, atol=atol,
                                   msg=(lambda m: f"{msg} (float32 rounding, atol={atol:.3g}): {m}") if msg else None)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, err_msg=msg)
