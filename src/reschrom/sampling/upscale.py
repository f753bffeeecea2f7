"""Cascaded upscaling of a low-resolution model (paper §4.2, Fig. 5–6, eq. 20–24).

Variants, each sampled from the same initial noise (same seed, sample by sample):

- ``full``: ε_high = ½ U[ε_low(λ_t D[x_t], τ_1)] + ε_res(x_t, t) (eq. 22);
- ``no_time_adjustment`` (τ_1 := t), ``no_intensity_rescaling`` (λ := 1), ``neither``;
- ``nearest``, ``bicubic``: the low-resolution model's own samples, upsampled — its initial
  noise is 2D[x_T] of the full-resolution x_T (unit variance), so its samples are the coarse
  templates of the cascaded ones;
- ``multilevel``: the M-level composite Σ_m 2^{-m} U^m[ε^(m)(x^(m)_{τ_m}, τ_m)] (eq. 24).

Models are diffusers ``UNet2DModel`` + scheduler folders (``save_pretrained`` layout of a
``DDPMPipeline``), or the exact predictors of :class:`HaarGaussian`, an analytic Gaussian data
model whose ε(x_t, t) is known in closed form at every resolution (used by the tests and by
``upscale.source: analytic``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reschrom.io import atomic_path, check_model_folder, image_grid, read_images
from reschrom.sampling import samplers as sampling
from reschrom.theory import pyramid
from reschrom.theory import resolution as theory
from reschrom.theory.levels import level_noise, residual_target
from reschrom.theory.schedules import Schedule

CASCADE_VARIANTS: dict[str, tuple[bool, bool]] = {
    "full": (True, True),
    "no_time_adjustment": (False, True),
    "no_intensity_rescaling": (True, False),
    "neither": (False, False),
}
"""variant → (time adjustment τ, intensity rescaling λ) of eq. 22."""
LOWRES_VARIANTS = ("nearest", "bicubic")
VARIANTS = (*CASCADE_VARIANTS, *LOWRES_VARIANTS, "multilevel")


# --------------------------------------------------------------------------------------
# analytic data model
# --------------------------------------------------------------------------------------


@dataclass
class HaarGaussian:
    """x0 = μ + Σ_m s_m P_m z, z ~ N(0, I): a Gaussian whose covariance Σ_m s_m² P_m is diagonal
    in the pyramid's bands P_m (eq. 19, orthogonal projections).

    Its noise posterior is exact: E[ε | x_t] = √(1-ᾱ) Σ_m P_m(x_t - √ᾱ μ) / (ᾱ s_m² + 1 - ᾱ).
    D commutes with the bands (D P_m = P'_{m-1} D, D P_0 = 0) and D z = ½ z', so D^k[x0] is
    again a HaarGaussian with mean D^k μ and band stds s_{m+k} / n^k (:meth:`level`): the exact
    predictors of every level are known, which makes "perfect" low-res, residual and
    per-level models for eq. 22–24.
    """

    mean: torch.Tensor  # (1, C, R, R)
    band_std: Sequence[float]  # s_0 (finest) … s_{M-1} (1×1)
    kernel: int = 2
    _s: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        M = theory.num_levels(self.mean.shape[-1], self.kernel)
        if len(self.band_std) != M:
            raise ValueError(f"band_std needs {M} entries for resolution {self.mean.shape[-1]}")
        self._s = torch.as_tensor(list(self.band_std), dtype=torch.float64)

    @classmethod
    def default(
        cls,
        resolution: int = 32,
        channels: int = 3,
        mean_amplitude: float = 0.4,
        fine_std: float = 0.08,
        slope: float = 1.25,
        kernel: int = 2,
    ) -> HaarGaussian:
        """A smooth colour gradient μ (one cycle per image) and band stds s_m = fine_std·2^{slope·m}
        (slope 1 is a 1/f² power spectrum, larger falls off faster towards fine scales)."""
        M = theory.num_levels(resolution, kernel)
        u = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
        yy, xx = torch.meshgrid(u, u, indexing="ij")
        phases = [0.0, 2.1, 4.2, 1.0, 3.0][:channels] + [0.0] * max(0, channels - 5)
        mean = torch.stack(
            [mean_amplitude * torch.cos(2 * math.pi * (xx + 0.5 * yy) + p) for p in phases[:channels]]
        )[None]
        return cls(mean.float(), [fine_std * 2 ** (slope * m) for m in range(M)], kernel)

    @property
    def resolution(self) -> int:
        return self.mean.shape[-1]

    def level(self, k: int) -> HaarGaussian:
        """The data model of D^k[x0]: mean D^k μ, band stds s_{m+k} / n^k."""
        s = [float(v) / self.kernel**k for v in self.band_std[k:]]
        return HaarGaussian(pyramid.downsample(self.mean, k, self.kernel), s, self.kernel)

    def sample(self, n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """n draws of x0 (float32), from ``torch.Generator().manual_seed(seed)``."""
        z = sampling.initial_noise((n, *self.mean.shape[1:]), seed, device)
        bands = pyramid.band_decompose(z.double(), self.kernel)
        x = sum(float(s) * b for s, b in zip(self._s, bands))
        return (self.mean.to(device).double() + x).float()

    def eps(self, x: torch.Tensor, alpha_bar: np.ndarray | float) -> torch.Tensor:
        """Exact E[ε | x_t] at signal levels ``alpha_bar`` (scalar or per sample, (B,))."""
        a = torch.as_tensor(np.asarray(alpha_bar, dtype=np.float64), dtype=torch.float64, device=x.device)
        a = a.reshape(-1, 1, 1, 1)
        r = x.double() - a.sqrt() * self.mean.to(x.device).double()
        out = torch.zeros_like(r)
        for s, b in zip(self._s.tolist(), pyramid.band_decompose(r, self.kernel)):
            out = out + b / (a * s * s + 1 - a)
        return ((1 - a).sqrt() * out).to(x.dtype)

    def predictor(self, schedule: Schedule, residual: bool = False) -> sampling.NoisePredictor:
        """The exact noise predictor at native times of ``schedule``; ``residual`` returns
        (I - UD) of it, the target of eq. 21 / eq. 23."""

        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            a = sampling._alpha_bar(schedule, torch.as_tensor(t).reshape(-1))
            e = self.eps(x, a)
            return residual_target(e, self.kernel) if residual else e

        return eps


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


@dataclass
class LevelModel:
    """One noise predictor with its schedule, scheduler config and side length."""

    predictor: sampling.NoisePredictor
    schedule: Schedule
    scheduler_config: dict
    resolution: int
    channels: int = 3


def load_model(folder: str | os.PathLike, device: torch.device | str = "cpu") -> LevelModel:
    """A ``UNet2DModel`` (``unet/``) and its ``DDPMScheduler`` (``scheduler/``) from a local
    ``save_pretrained`` folder, as a continuous-time predictor (:func:`sampling.unet_predictor`)."""
    from diffusers import DDPMScheduler, UNet2DModel

    p = Path(folder)
    if not (p / "unet").is_dir() or not (p / "scheduler").is_dir():
        raise FileNotFoundError(f"model folder {p} needs unet/ and scheduler/ (DDPMPipeline layout)")
    check_model_folder(p, ("unet", "scheduler"))
    unet = UNet2DModel.from_pretrained(p, subfolder="unet").to(device).eval()
    sched = DDPMScheduler.from_pretrained(p, subfolder="scheduler")
    size = unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    return LevelModel(
        sampling.unet_predictor(unet),
        sampling.schedule_of(sched, name=p.name),
        dict(sched.config),
        int(size),
        int(unet.config.in_channels),
    )


def analytic_models(
    data: HaarGaussian, num_levels: int, scheduler_config: Mapping | None = None
) -> dict[str, Any]:
    """Exact predictors of ``data`` in the layout of :func:`load_models`: ``lowres`` (level 1),
    ``residual`` (eq. 21) and ``levels`` (eq. 23, m = 0 … num_levels-1)."""
    from diffusers import DDPMScheduler

    cfg = dict(scheduler_config or DDPMScheduler(clip_sample=False).config)
    sched = sampling.schedule_of(cfg, name="analytic")
    C, R = data.mean.shape[1], data.resolution

    def lm(k: int, residual: bool) -> LevelModel:
        return LevelModel(data.level(k).predictor(sched, residual), sched, cfg, R // data.kernel**k, C)

    return {
        "lowres": lm(1, False),
        "residual": lm(0, True),
        "levels": [lm(k, k < num_levels - 1) for k in range(num_levels)],
    }


def load_models(dirs: Mapping[str, Any], device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load the model folders the variants need, each once: ``dirs`` maps ``lowres``/``residual`` to a folder and
    ``levels`` to a list of folders, or ``level_0`` … ``level_{M-1}`` to one folder each (any
    may be absent)."""
    out: dict[str, Any] = {}
    for key in ("lowres", "residual"):
        if dirs.get(key):
            out[key] = load_model(dirs[key], device)
    levels = list(dirs.get("levels") or [])
    named = sorted((int(k.split("_", 1)[1]), v) for k, v in dirs.items() if k.startswith("level_"))
    if named:
        if [m for m, _ in named] != list(range(len(named))):
            raise ValueError(f"level models must be level_0 … level_{{M-1}}, got {[m for m, _ in named]}")
        levels = [v for _, v in named]
    if levels:
        out["levels"] = [load_model(d, device) for d in levels]
    return out


# --------------------------------------------------------------------------------------
# sampling the variants
# --------------------------------------------------------------------------------------


def upsample_image(x: torch.Tensor, mode: str, factor: int = 2) -> torch.Tensor:
    """×factor upsampling of low-res samples: ``nearest`` is U, ``bicubic`` torch's bicubic."""
    if mode == "nearest":
        return pyramid.upsample(x, 1, factor)
    if mode == "bicubic":
        return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)
    raise ValueError(f"upsampling mode {mode!r} is unknown; allowed: nearest, bicubic")


def variant_setup(
    variant: str, models: Mapping[str, Any], kernel: int = 2
) -> tuple[sampling.NoisePredictor, dict, int, int, int]:
    """(predictor, scheduler config, side length, channels, pooling levels below full
    resolution) of a variant."""
    if variant in CASCADE_VARIANTS:
        tau, lam = CASCADE_VARIANTS[variant]
        low, res = models["lowres"], models["residual"]
        if low.resolution * kernel != res.resolution:
            raise ValueError(
                f"low-res model is {low.resolution}×{low.resolution}, residual model "
                f"{res.resolution}×{res.resolution}: expected a factor {kernel}"
            )
        eps = sampling.cascade_predictor(
            low.predictor, res.predictor, res.schedule, low.schedule, kernel, tau, lam
        )
        return eps, res.scheduler_config, res.resolution, res.channels, 0
    if variant in LOWRES_VARIANTS:
        low = models["lowres"]
        return low.predictor, low.scheduler_config, low.resolution, low.channels, 1
    if variant == "multilevel":
        levels = models["levels"]
        for m, lv in enumerate(levels):
            if lv.resolution * kernel**m != levels[0].resolution:
                raise ValueError(f"level model {m} is {lv.resolution}×{lv.resolution}, expected "
                                 f"{levels[0].resolution // kernel**m}")
        eps = sampling.multilevel_predictor(
            [lv.predictor for lv in levels], levels[0].schedule, [lv.schedule for lv in levels], kernel
        )
        return eps, levels[0].scheduler_config, levels[0].resolution, levels[0].channels, 0
    raise ValueError(f"variant {variant!r} is unknown; allowed: {', '.join(VARIANTS)}")


def sample_variant(
    variant: str,
    models: Mapping[str, Any],
    num_samples: int,
    num_inference_steps: int,
    seed: int,
    batch_size: int = 16,
    sampler: str = "ddim",
    threshold: str = "multires",
    eta: float = 0.0,
    kernel: int = 2,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Sample one variant; returns ``images`` (N, C, R, R) at full resolution, not clamped, and
    for low-res variants also ``lowres`` (N, C, R/2, R/2).

    Seeds: x_T of all N samples is one draw from ``seed`` at full resolution (the low-res model
    starts from 2D[x_T], its unit-variance coarse part); batch b's per-step noise (DDPM, or DDIM
    with eta > 0) comes from a generator seeded ``seed + 1 + b``. Every variant therefore starts
    sample i from the same noise.
    """
    eps, sched_cfg, size, C, down = variant_setup(variant, models, kernel)
    full = size * kernel**down
    x_T = sampling.initial_noise((num_samples, C, full, full), seed, device)
    if down:
        x_T = level_noise(x_T, down, kernel)
    scheduler = sampling.make_scheduler(sampler, sched_cfg)
    outs = []
    for b, start in enumerate(range(0, num_samples, batch_size)):
        g = torch.Generator("cpu").manual_seed(int(seed) + 1 + b)
        xb = x_T[start : start + batch_size]
        outs.append(
            sampling.sample(
                eps, scheduler, xb, num_inference_steps, g, threshold, eta, kernel, progress,
                desc=f"{variant} batch {b}",
            ).float().cpu()
        )
    x = torch.cat(outs)
    if variant in LOWRES_VARIANTS:
        return {"images": upsample_image(x, variant, kernel**down), "lowres": x}
    return {"images": x}


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------


def save_samples(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping | None = None) -> None:
    """safetensors file (atomic) with float32 tensors, e.g. ``images``; metadata as strings."""
    from safetensors.torch import save_file

    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in tensors.items()},
            str(tmp),
            # one key holding sorted JSON: safetensors writes a metadata map in hash order,
            # which would make identical runs differ byte for byte
            metadata={"reschrom": json.dumps({k: str(v) for k, v in (metadata or {}).items()}, sort_keys=True)},
        )


def load_images(path: str | os.PathLike, key: str = "images", limit: int | None = None) -> torch.Tensor:
    """Images from a safetensors file as float32 in the model range: uint8 is mapped
    x/127.5 - 1, float stays as is. A missing file or key raises an error naming it
    (:func:`reschrom.io.read_images` as a tensor)."""
    return torch.from_numpy(read_images(path, key, limit))


def save_grid(x: torch.Tensor, path: str | os.PathLike, ncol: int = 8, scale: int = 2) -> None:
    """PNG mosaic of a batch in [-1, 1] (:func:`reschrom.io.image_grid`, atomic), each pixel
    repeated ``scale`` times for visibility."""
    from PIL import Image

    g = image_grid(x.detach().float().cpu().numpy(), ncol)
    if scale > 1:
        g = g.repeat(scale, 0).repeat(scale, 1)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(g.squeeze(-1) if g.shape[-1] == 1 else g).save(tmp, format="PNG")


def run_variants(
    variants: Sequence[str],
    out_samples: Sequence[str | os.PathLike],
    out_grids: Sequence[str | os.PathLike],
    source: str = "trained",
    model_dirs: Mapping[str, Any] | None = None,
    analytic: Mapping[str, Any] | None = None,
    num_levels: int = 2,
    num_samples: int = 16,
    num_inference_steps: int = 50,
    seed: int = 0,
    batch_size: int = 16,
    sampler: str = "ddim",
    threshold: str = "multires",
    eta: float = 0.0,
    kernel: int = 2,
    device: str = "auto",
    threads: int | None = None,
) -> None:
    """Sample every variant of one dataset in one process: the model folders (the union of what
    the variants need) are loaded once, then each variant writes its safetensors (``images``,
    ``lowres`` for low-res variants) and a PNG grid of the first 16, each file atomically.

    A variant's samples do not depend on which other variants run with it (each starts from the
    same seeded noise, :func:`sample_variant`), so they equal :func:`run_variant`'s bitwise.
    """
    if not (len(variants) == len(out_samples) == len(out_grids)):
        raise ValueError(f"upscale: {len(variants)} variants, {len(out_samples)} sample files and "
                         f"{len(out_grids)} grids")
    if threads:
        torch.set_num_threads(int(threads))
    from tqdm.auto import tqdm

    from reschrom.models.pipelines import resolve_device

    dev = resolve_device(device)
    if source == "analytic":
        models = analytic_models(HaarGaussian.default(**dict(analytic or {})), num_levels)
    elif source == "trained":
        models = load_models(model_dirs or {}, dev)
    else:
        raise ValueError(f"upscale source {source!r} is unknown; allowed: trained, analytic")
    for variant, out_s, out_g in tqdm(list(zip(variants, out_samples, out_grids)), desc="upscale variants",
                                      unit="variant"):
        out = sample_variant(
            variant, models, num_samples, num_inference_steps, seed, batch_size, sampler, threshold, eta,
            kernel, dev,
        )
        meta = dict(variant=variant, source=source, seed=seed, steps=num_inference_steps, sampler=sampler,
                    threshold=threshold, eta=eta)
        save_samples(out, out_s, meta)
        save_grid(out["images"][:16], out_g, 8)


def run_variant(
    variant: str,
    out_samples: str | os.PathLike,
    out_grid: str | os.PathLike,
    source: str = "trained",
    model_dirs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Sample one variant (trained model folders or the analytic model): :func:`run_variants`
    with one variant; ``kwargs`` are its sampling settings."""
    run_variants([variant], [out_samples], [out_grid], source, model_dirs, **kwargs)


def write_analytic_reference(out: str | os.PathLike, analytic: Mapping[str, Any], num_samples: int, seed: int) -> None:
    """Held-out data of the analytic model (``images``, float32 in model range)."""
    data = HaarGaussian.default(**dict(analytic))
    save_samples({"images": data.sample(num_samples, seed)}, out, {"source": "analytic", "seed": seed})
