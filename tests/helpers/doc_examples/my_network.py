"""The ``my_network`` that the ``kind: module`` example of docs/models.md (``my_module.py``) imports.

``tests/project/test_docs_examples.py`` puts this file and the ``weights.safetensors`` of
:func:`write_weights` beside that ``my_module.py`` in a model folder, then loads that
folder as a ``kind: module`` model from another working directory: the example's
``Net.load("weights.safetensors")`` must find the file in the model's folder.

``Net`` is the exact EDM denoiser of a class-conditional Gaussian model at 28×28, one channel:
class k ∈ 0…9 is N(μ_k, s²I) and label 10 ("no class") a broad Gaussian N(mean of the μ_k,
s_null²I); for a label with mean μ and std s, D(x; σ) = μ + s²/(s² + σ²)(x − μ), the posterior
mean E[x0 | x = x0 + σ·n]. Its parameters are its weights.
"""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file, save_file

NUM_CLASSES, RES = 10, 28


class Net(torch.nn.Module):
    """forward(x, sigma, class_labels) -> D(x; σ) ≈ E[x0 | x], x = x0 + σ·n (EDM's convention)."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("means", means)  # (11, 1, 28, 28): classes 0…9, then the null label
        self.register_buffer("stds", stds)  # (11,)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Net:
        """A network from a safetensors file (keys ``means``, ``stds``)."""
        w = load_file(str(path))
        return cls(w["means"], w["stds"])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(class_labels, device=x.device).long()
        mu = self.means[labels].to(x.dtype)
        s2 = (self.stds[labels].to(x.dtype) ** 2).reshape(-1, 1, 1, 1)
        sig2 = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1) ** 2
        return mu + s2 / (s2 + sig2) * (x - mu)


def write_weights(path: str | os.PathLike, seed: int = 0) -> None:
    """Ten class means with a coarse random pattern (7×7 blocks of 4×4 pixels at ±0.8), class
    std 0.1, and the null label: their mean image with a std that covers their spread."""
    g = torch.Generator().manual_seed(seed)
    blocks = (torch.rand(NUM_CLASSES, 1, 7, 7, generator=g) > 0.5).float() * 1.6 - 0.8
    means = blocks.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    null_std = float((means - means.mean(0)).pow(2).mean().sqrt()) + 0.1
    save_file(
        {
            "means": torch.cat([means, means.mean(0, keepdim=True)]).contiguous(),
            "stds": torch.tensor([0.1] * NUM_CLASSES + [null_std]),
        },
        str(path),
    )
