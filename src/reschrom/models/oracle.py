"""An analytic oracle: a text-to-image "model" whose ε is the exact posterior (beyond the paper).

Data model: a mixture of K *concepts*. Concept k is a Gaussian image

    x0 ~ N(μ_k, Σ_k),   Σ_k = F^H diag(S_k) F   (stationary, periodic texture),

with a mean image μ_k (coarse structure) and a power-law texture spectrum per channel
S_kc(f) ∝ a_kc² (|f|² + f0²)^{-β_k/2} (F the orthonormal 2-D DFT, |f| in cycles per image,
normalised so that a_kc² is the per-pixel texture variance). Given x_t = √ᾱ x0 + √(1-ᾱ) ε
(eq. 1), x_t | k ~ N(√ᾱ μ_k, V_k) with V_k = ᾱ Σ_k + (1-ᾱ) I, diagonal in Fourier space with
eigenvalues v_k(f) = ᾱ S_k(f) + 1 - ᾱ. Hence, exactly:

* the Wiener filter: E[x0 | x_t, k] = μ_k + F^H[√ᾱ S_k / v_k · F(x_t - √ᾱ μ_k)],
* the per-concept noise prediction (eq. 7 solved for ε):
  ε_k(x_t) = (x_t - √ᾱ E[x0|x_t,k]) / √(1-ᾱ) = √(1-ᾱ) F^H[F(x_t - √ᾱ μ_k) / v_k],
* the concept posterior p(k | x_t, c) ∝ w_k(c) π_k N(x_t; √ᾱ μ_k, V_k), its log-likelihood
  -½ Σ_f |F(x_t - √ᾱ μ_k)|²/v_k(f) - ½ Σ_f log v_k(f) - (N/2) log 2π computed in Fourier space,
* ε(x_t, t; c) = Σ_k p(k | x_t, c) ε_k(x_t), E[x0 | x_t, c] = Σ_k p(k | x_t, c) E[x0 | x_t, k].

The unconditional model is the mixture over all concepts (w ≡ 1); a prompt selects the concepts
it names (w_k = 1 for named concepts, 0 otherwise; a prompt naming none is unconditional).

:class:`OracleDenoiser` wraps this with the diffusers UNet call signature
(``forward(sample, timestep, encoder_hidden_states) -> .sample``), where the "text embedding"
is the concept-weight vector (B, 1, K); :class:`OraclePipeline` is a ``DiffusionPipeline``
doing CFG exactly like ``IFPipeline`` (one batched [uncond, cond] call per step, a diffusers
scheduler's ``step``), so :mod:`reschrom.measure.probe` and the composing code run on it unchanged.
Everything is float64 inside; it runs at any resolution in seconds on a CPU.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, DiffusionPipeline, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.unets.unet_2d import UNet2DOutput

from reschrom.theory.levels import x0_from_eps

# --------------------------------------------------------------------------------------
# concepts
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Concept:
    """One mixture component: a mean image ``shape`` and a power-law texture.

    ``shape`` names the mean image (:func:`mean_image`), ``fg``/``bg`` its per-channel values
    inside/outside the shape; ``beta`` the spectrum exponent and ``amplitude`` the per-channel
    texture standard deviation (its "colour"). ``kind`` says what it differs in: "structure"
    concepts share a texture and differ in mean image; "texture" concepts share a flat mean
    and differ in spectrum exponent/amplitude/colour.
    """

    name: str
    shape: str = "flat"
    fg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    beta: float = 2.0
    amplitude: tuple[float, float, float] = (0.15, 0.15, 0.15)
    kind: str = "structure"


DEFAULT_CONCEPTS: tuple[Concept, ...] = (
    Concept("disc", "disc", fg=(0.7, 0.5, -0.2), bg=(-0.4, -0.4, -0.2)),
    Concept("square", "square", fg=(-0.2, 0.5, 0.7), bg=(-0.4, -0.4, -0.2)),
    Concept("horizon", "horizon", fg=(0.3, 0.5, 0.8), bg=(-0.3, -0.1, -0.5)),
    Concept("grass", beta=1.0, amplitude=(0.15, 0.45, 0.15), kind="texture"),
    Concept("clouds", beta=3.5, amplitude=(0.45, 0.45, 0.5), kind="texture"),
    Concept("marble", beta=2.0, amplitude=(0.5, 0.2, 0.2), kind="texture"),
)
"""Three structure concepts (mean images) and three texture concepts (spectra)."""

CONCEPT_LIBRARY: dict[str, Concept] = {c.name: c for c in DEFAULT_CONCEPTS}


def mean_image(shape: str, resolution: int, fg: Sequence[float], bg: Sequence[float]) -> np.ndarray:
    """Mean image μ (C, R, R) of a concept, defined on continuous coordinates in [-1, 1]².

    ``flat`` (= ``bg`` everywhere), ``disc`` (radius 0.55), ``square`` (half side 0.45),
    ``horizon`` (``fg`` above the middle, ``bg`` below). Pixel centres are sampled, so the
    same concept is defined at every resolution.
    """
    c = (np.arange(resolution) + 0.5) / resolution * 2 - 1
    v, u = np.meshgrid(c, c, indexing="ij")  # v: row (down), u: column
    if shape == "flat":
        mask = np.zeros_like(u)
    elif shape == "disc":
        mask = (u**2 + v**2 <= 0.55**2).astype(np.float64)
    elif shape == "square":
        mask = ((np.abs(u) <= 0.45) & (np.abs(v) <= 0.45)).astype(np.float64)
    elif shape == "horizon":
        mask = (v < 0).astype(np.float64)
    else:
        raise ValueError(f"oracle mean image {shape!r} is unknown; allowed: flat, disc, square, horizon")
    fg_ = np.asarray(fg, dtype=np.float64)[:, None, None]
    bg_ = np.asarray(bg, dtype=np.float64)[:, None, None]
    return bg_ + (fg_ - bg_) * mask[None]


def power_spectrum(resolution: int, beta: float, amplitude: Sequence[float], f0: float = 1.0) -> np.ndarray:
    """Eigenvalues S_c(f) (C, R, R) of a stationary texture's covariance in the orthonormal DFT.

    S_c(f) = a_c² · N · s(f)/Σ_f s(f), s(f) = (|f|² + f0²)^{-β/2}, f in cycles per image
    (``fftfreq`` order). Normalised so the per-pixel variance is a_c² (Σ_f S/N = a²).
    """
    f = np.fft.fftfreq(resolution, d=1.0 / resolution)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    s = (fx**2 + fy**2 + f0**2) ** (-beta / 2.0)
    s = s * (resolution * resolution) / s.sum()
    a = np.asarray(amplitude, dtype=np.float64)[:, None, None]
    return a**2 * s[None]


# --------------------------------------------------------------------------------------
# the exact denoiser
# --------------------------------------------------------------------------------------


class OracleDenoiser(ModelMixin, ConfigMixin):
    """Exact ε(x_t, t; c) of a Gaussian concept mixture, with a diffusers UNet's call signature.

    ``forward(sample, timestep, encoder_hidden_states=None, return_dict=True, **ignored)``
    returns ``UNet2DOutput(sample=ε)`` (or a 1-tuple). ``encoder_hidden_states`` (B, L, K) holds
    concept weights w_k(c) ≥ 0 (averaged over L); None means unconditional (w ≡ 1). ``timestep``
    is a DDPM step index (scalar or (B,), fractional allowed: log-SNR is interpolated) into the
    ``alphas_cumprod`` table given at construction (the scheduler's own).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        sample_size: int = 64,
        in_channels: int = 3,
        out_channels: int = 3,
        concepts: list[dict] | None = None,
        f0: float = 1.0,
        alphas_cumprod: list[float] | None = None,
    ) -> None:
        super().__init__()
        if in_channels != 3 or out_channels != 3:
            raise ValueError("the oracle's concepts are RGB: in_channels = out_channels = 3")
        specs = [Concept(**c) for c in concepts] if concepts else list(DEFAULT_CONCEPTS)
        self.concepts = specs
        R = int(sample_size)
        mu = np.stack([mean_image(c.shape, R, c.fg, c.bg) for c in specs])
        S = np.stack([power_spectrum(R, c.beta, c.amplitude, f0) for c in specs])
        if alphas_cumprod is None:
            from diffusers import DDPMScheduler

            alphas_cumprod = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.tolist()
        ac = torch.tensor(alphas_cumprod, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
        # The one buffer: sets the module's dtype/device (float64 by default, see
        # build_oracle_pipeline). The physics stays float64 in plain attributes, moved to the
        # sample's device on first use, untouched by .to(dtype).
        self.register_buffer("_anchor", torch.zeros(1, dtype=torch.float32), persistent=False)
        w = torch.full((R // 2 + 1,), 2.0, dtype=torch.float64)
        w[0] = 1.0
        if R % 2 == 0:
            w[-1] = 1.0
        self._host = {
            "mu": torch.from_numpy(mu),  # (K, C, R, R)
            "mu_hat": torch.fft.rfft2(torch.from_numpy(mu), norm="ortho"),  # (K, C, R, R//2+1)
            "spectrum": torch.from_numpy(np.ascontiguousarray(S[..., : R // 2 + 1])),
            "spectrum_full": torch.from_numpy(S),
            "hermitian_weight": w,  # counts each rfft column as its Hermitian pair(s)
            "log_snr": torch.log(ac) - torch.log1p(-ac),
        }
        self._cache: dict[str, dict[str, torch.Tensor]] = {}

    def physics(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The float64 tables (means, spectra, log-SNR table) on ``device`` (cached)."""
        dev = str(torch.device(device) if device is not None else self._anchor.device)
        if dev not in self._cache:
            self._cache[dev] = {k: v.to(dev) for k, v in self._host.items()}
        return self._cache[dev]

    @property
    def concept_names(self) -> list[str]:
        return [c.name for c in self.concepts]

    @property
    def num_concepts(self) -> int:
        return len(self.concepts)

    # -- schedule ------------------------------------------------------------------------
    def alpha_bar(
        self, timestep: torch.Tensor | float | int, batch: int, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """ᾱ at a (possibly fractional) DDPM step, shape (B,), float64."""
        ls = self.physics(device)["log_snr"]
        t = torch.as_tensor(timestep, device=ls.device).to(torch.float64).reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        t = t.clamp(0, len(ls) - 1)
        i = t.floor().long().clamp(max=len(ls) - 2)
        w = t - i
        y = ls[i] * (1 - w) + ls[i + 1] * w
        return torch.sigmoid(y)

    # -- the exact posterior ---------------------------------------------------------------
    def _terms(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per concept: R_k = F(x - √ᾱ μ_k) (real FFT half-plane), v_k, log N(x; √ᾱ μ_k, V_k).

        Shapes (B, K, C, R, R//2+1) twice and (B, K). Sums over the full spectrum are taken on
        the half-plane with each column weighted by its number of Hermitian partners (exact).
        """
        ph = self.physics(x.device)
        x = x.to(torch.float64)
        a4 = a.to(x.device).reshape(-1, 1, 1, 1, 1)
        xh = torch.fft.rfft2(x, norm="ortho")[:, None]  # (B, 1, C, R, R//2+1)
        Rk = xh - a4.sqrt() * ph["mu_hat"][None]
        v = a4 * ph["spectrum"][None] + (1 - a4)
        wgt = ph["hermitian_weight"]
        quad = ((Rk.real.square() + Rk.imag.square()) / v * wgt).sum(dim=(2, 3, 4))
        logdet = (torch.log(v) * wgt).sum(dim=(2, 3, 4))
        ll = -0.5 * quad - 0.5 * logdet - 0.5 * x[0].numel() * math.log(2 * math.pi)
        return Rk, v, ll

    def concept_posterior(
        self, x_t: torch.Tensor, alpha_bar: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """p(k | x_t, c) ∝ w_k(c) π_k N(x_t; √ᾱ μ_k, ᾱΣ_k + (1-ᾱ)I), shape (B, K); π uniform."""
        _, _, ll = self._terms(x_t, alpha_bar)
        return self._posterior(ll, weights)

    def _posterior(self, ll: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if weights is None:
            logw = torch.zeros_like(ll)
        else:
            w = weights.to(torch.float64).reshape(ll.shape[0], -1, ll.shape[1]).mean(1)
            logw = torch.log(w.clamp_min(0))
        return torch.softmax(ll + logw, dim=1)

    def eps_and_x0(
        self, x_t: torch.Tensor, alpha_bar: torch.Tensor, weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact (ε, E[x0|x_t]) in float64: ε = √(1-ᾱ) F^H[Σ_k p_k R_k / v_k] (Wiener filter)."""
        Rk, v, ll = self._terms(x_t, alpha_bar)
        p = self._posterior(ll, weights)[:, :, None, None, None]
        a4 = alpha_bar.reshape(-1, 1, 1, 1)
        R = x_t.shape[-1]
        a4 = a4.to(x_t.device)
        eps = torch.fft.irfft2((p * Rk / v).sum(1), s=(R, R), norm="ortho") * (1 - a4).sqrt()
        x0 = x0_from_eps(x_t.to(torch.float64), eps, a4.reshape(-1))  # eq. 7
        return eps, x0

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> UNet2DOutput | tuple[torch.Tensor]:
        a = self.alpha_bar(timestep, sample.shape[0], sample.device)
        eps, _ = self.eps_and_x0(sample, a, encoder_hidden_states)
        eps = eps.to(sample.dtype)
        return UNet2DOutput(sample=eps) if return_dict else (eps,)

    # -- sampling the data model ----------------------------------------------------------
    def sample_x0(
        self, n: int, generator: torch.Generator | None = None, weights: Sequence[float] | None = None
    ) -> torch.Tensor:
        """n exact draws of x0 from the mixture (restricted to ``weights`` if given), float64."""
        ph = self.physics()
        K = self.num_concepts
        w = torch.ones(K, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        k = torch.multinomial(w / w.sum(), n, replacement=True, generator=generator)
        z = torch.randn((n, *ph["mu"].shape[1:]), generator=generator, dtype=torch.float64)
        z, k = z.to(ph["mu"].device), k.to(ph["mu"].device)
        tex = torch.fft.ifft2(ph["spectrum_full"][k].sqrt() * torch.fft.fft2(z, norm="ortho"), norm="ortho")
        return ph["mu"][k] + tex.real


# --------------------------------------------------------------------------------------
# prompts → concept weights
# --------------------------------------------------------------------------------------


def concept_weights(prompt: str, names: Sequence[str]) -> np.ndarray:
    """w_k(c): 1 for each concept named (as a whole word, case-insensitive) in ``prompt``.

    A prompt that names no concept (e.g. the empty negative prompt) gives w ≡ 1, the
    unconditional mixture.
    """
    text = str(prompt).lower()
    w = np.array([1.0 if re.search(rf"\b{re.escape(n.lower())}\b", text) else 0.0 for n in names])
    return w if w.any() else np.ones(len(names))


class OraclePipeline(DiffusionPipeline):
    """Text-to-image CFG sampling from the analytic oracle, laid out like ``IFPipeline``.

    Components: ``unet`` (:class:`OracleDenoiser`) and ``scheduler`` (a diffusers DDPM/DDIM
    scheduler whose ``alphas_cumprod`` the oracle uses). ``encode_prompt`` maps prompts to
    concept weights (B, 1, K); ``__call__`` runs the scheduler's loop with one batched
    [uncond, cond] denoiser call per step and ε̃ = ε_u + w(ε_c - ε_u) (eq. 5).
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: OracleDenoiser, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def encode_prompt(
        self,
        prompt: str | list[str],
        do_classifier_free_guidance: bool = True,
        num_images_per_prompt: int = 1,
        device: torch.device | None = None,
        negative_prompt: str | list[str] | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(prompt_embeds, negative_prompt_embeds), each (B·n, 1, K) concept weights."""
        device = device or self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        names = self.unet.concept_names

        def enc(ps: list[str]) -> torch.Tensor:
            w = np.stack([concept_weights(p, names) for p in ps])
            e = torch.tensor(w, dtype=torch.float32, device=device)[:, None, :]
            return e.repeat_interleave(num_images_per_prompt, dim=0)

        pos = enc(prompts)
        neg = None
        if do_classifier_free_guidance:
            if negative_prompt is None:
                negs = [""] * len(prompts)
            elif isinstance(negative_prompt, str):
                negs = [negative_prompt] * len(prompts)
            else:
                negs = list(negative_prompt)
            neg = enc(negs)
        return pos, neg

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        eta: float = 0.0,
        **kwargs: Any,
    ) -> Any:
        """Sample images; ``output_type`` "pt" gives x in [-1, 1]-ish, "np" gives (x/2+½) clamped HWC."""
        from diffusers.pipelines.deepfloyd_if import IFPipelineOutput
        from diffusers.utils.torch_utils import randn_tensor

        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        if prompt_embeds is None:
            prompt_embeds, negative_prompt_embeds = self.encode_prompt(
                prompt, do_cfg, num_images_per_prompt, device, negative_prompt
            )
        elif do_cfg and negative_prompt_embeds is None:
            negative_prompt_embeds = torch.ones_like(prompt_embeds)
        embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_cfg else prompt_embeds
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)
        B = prompt_embeds.shape[0]
        R = self.unet.config.sample_size
        shape = (B, self.unet.config.in_channels, R, R)
        x = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        x = x * self.scheduler.init_noise_sigma
        step_kwargs: dict[str, Any] = {"generator": generator}
        if "eta" in self.scheduler.step.__code__.co_varnames:
            step_kwargs["eta"] = eta
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([x] * 2) if do_cfg else x
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise_pred = self.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            if do_cfg:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
            x = self.scheduler.step(noise_pred, t, x, **step_kwargs, return_dict=False)[0]
        image = x
        if output_type != "pt":
            image = (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).float().numpy()
            if output_type == "pil":
                image = self.numpy_to_pil(image)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (image, None, None)
        return IFPipelineOutput(images=image, nsfw_detected=None, watermark_detected=None)


ORACLE_SCHEDULER_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "variance_type": "fixed_small",
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


def build_oracle_pipeline(
    resolution: int = 64,
    concepts: Sequence[str] | Sequence[Mapping[str, Any]] | None = None,
    sampler: str = "ddpm",
    scheduler: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    f0: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> OraclePipeline:
    """An :class:`OraclePipeline` at ``resolution`` with the named concepts (default: all six).

    ``concepts`` are names from :data:`CONCEPT_LIBRARY` or dicts of :class:`Concept` fields;
    ``sampler`` "ddpm" (IF-like ancestral, ``DDPMScheduler``) or "ddim" (``DDIMScheduler``, η=0);
    ``scheduler`` overrides :data:`ORACLE_SCHEDULER_DEFAULTS` (e.g. ``beta_schedule``).
    ``dtype`` is the pipeline's working dtype (float64 by default, so that the CFG term
    g = ε_c − ε_u stays resolvable long after the concept posterior has nearly collapsed).
    """
    from dataclasses import asdict

    from diffusers import DDIMScheduler, DDPMScheduler

    if concepts is None:
        specs = [asdict(c) for c in DEFAULT_CONCEPTS]
    else:
        specs = []
        for c in concepts:
            if isinstance(c, str):
                if c not in CONCEPT_LIBRARY:
                    raise ValueError(f"oracle concept {c!r} is unknown; allowed: {', '.join(CONCEPT_LIBRARY)}")
                specs.append(asdict(CONCEPT_LIBRARY[c]))
            else:
                specs.append(asdict(Concept(**c)))
    cfg = dict(ORACLE_SCHEDULER_DEFAULTS)
    cfg.update(scheduler or {})
    if sampler == "ddpm":
        sched = DDPMScheduler(**cfg)
    elif sampler == "ddim":
        cfg.pop("variance_type", None)
        sched = DDIMScheduler(**{**cfg, "set_alpha_to_one": False})
    else:
        raise ValueError(f"oracle sampler {sampler!r} is unknown; allowed: ddpm, ddim")
    for s in specs:  # tuples → lists for the JSON config
        for key in ("fg", "bg", "amplitude"):
            s[key] = list(s[key])
    unet = OracleDenoiser(
        sample_size=int(resolution),
        concepts=specs,
        f0=f0,
        alphas_cumprod=sched.alphas_cumprod.double().tolist(),
    )
    pipe = OraclePipeline(unet=unet, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    unet._anchor = torch.zeros(1, dtype=dtype, device=torch.device(device))
    return pipe
