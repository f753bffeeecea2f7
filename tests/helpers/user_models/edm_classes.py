"""An "other people's model" for the acceptance test: no diffusers, a plain ``nn.Module``.

x0 prediction with EDM preconditioning (Karras et al. 2022), σ-parameterised, class-conditioned
("digit 3" → class 3, an extra null class), 12×12 (= 3·2²) with one channel. It is analytic: class
k is the Gaussian N(μ_k, s²I) with a blocky mean image μ_k, whose exact denoiser is
D(x; σ) = μ_k + s²/(s²+σ²)(x − μ_k); the null class is N(mean of μ_k, s_null²I).
"""

import torch

from reschrom.models.contract import eps_from_x0_predictor

NUM_CLASSES, RES, STD, NULL_STD, SIGMA_DATA = 10, 12, 0.1, 0.5, 0.5


def class_means() -> torch.Tensor:
    """(10, 1, 12, 12): a 3×3 grid of 4×4 blocks at ±0.8, a different bit pattern per class."""
    codes = [((k + 1) * 77) % 512 for k in range(NUM_CLASSES)]  # ×77 is a bijection mod 512
    bits = torch.tensor([[(c >> j) & 1 for j in range(9)] for c in codes], dtype=torch.float64)
    blocks = (bits * 1.6 - 0.8).reshape(NUM_CLASSES, 1, 3, 3)
    return blocks.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)


class EDMClassNet(torch.nn.Module):
    """D(x; σ, label) = c_skip·x + c_out·F(c_in·x, c_noise, label), with F the exact network."""

    def __init__(self) -> None:
        super().__init__()
        mu = class_means()
        self.register_buffer("means", torch.cat([mu, mu.mean(0, keepdim=True)]))  # null = id 10
        self.register_buffer("stds", torch.tensor([STD] * NUM_CLASSES + [NULL_STD], dtype=torch.float64))

    def raw(self, x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """F: the target (D − c_skip·x)/c_out of the exact Gaussian denoiser, from F's own inputs."""
        sigma = (4 * c_noise).exp().reshape(-1, 1, 1, 1)
        x = x_in * (sigma**2 + SIGMA_DATA**2).sqrt()
        mu, s2 = self.means[labels], self.stds[labels].reshape(-1, 1, 1, 1) ** 2
        d = mu + s2 / (s2 + sigma**2) * (x - mu)
        c_skip = SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2)
        c_out = sigma * SIGMA_DATA / (sigma**2 + SIGMA_DATA**2).sqrt()
        return (d - c_skip * x) / c_out

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        sig = sigma.to(x.dtype).reshape(-1, 1, 1, 1)
        c_skip = SIGMA_DATA**2 / (sig**2 + SIGMA_DATA**2)
        c_out = sig * SIGMA_DATA / (sig**2 + SIGMA_DATA**2).sqrt()
        c_in = 1 / (sig**2 + SIGMA_DATA**2).sqrt()
        c_noise = sig.reshape(-1).log() / 4
        return c_skip * x + c_out * self.raw(c_in * x, c_noise, class_labels)


class EDMClassModel:
    """The object the factory returns: the denoiser contract of reschrom.models.contract."""

    resolution, channels = RES, 1
    schedule = {"type": "edm", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}

    def __init__(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        self.device, self.dtype = torch.device(device or "cpu"), dtype or torch.float32
        self.net = EDMClassNet().to(device=self.device, dtype=self.dtype)
        self.eps = eps_from_x0_predictor(self.net)  # the one line that adapts the network

    def encode(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([int(p.split()[-1]) for p in prompts], device=self.device)

    def null_condition(self, batch: int) -> torch.Tensor:
        return torch.full((batch,), NUM_CLASSES, device=self.device)


def load(device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> EDMClassModel:
    return EDMClassModel(device, dtype)
