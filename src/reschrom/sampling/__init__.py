"""Sampling: the project's samplers, classifier-free guidance for denoiser models and cascaded
upscaling.

* :mod:`~reschrom.sampling.samplers` — DDIM/DDPM with the level composites of eq. 22 and 24;
* :mod:`~reschrom.sampling.cfg` — deterministic DDIM (eq. 4) with CFG (eq. 5) or its composite
  form (eq. 6) for any :class:`~reschrom.models.module.ModuleModel`;
  **a new guidance rule for denoiser models goes here**;
* :mod:`~reschrom.sampling.upscale` — cascaded upscaling and its ablations (paper Fig. 5–6).

May import: :mod:`reschrom.io`, :mod:`reschrom.theory`, :mod:`reschrom.data`, :mod:`reschrom.models`.

Every public name of the submodules is also importable from the package itself
(``reschrom.sampling.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'ddim_time_grid': 'cfg',
    'model_noise': 'cfg',
    'sample_cfg': 'cfg',
    'sample_time': 'cfg',
    'NoisePredictor': 'samplers',
    'SAMPLERS': 'samplers',
    'THRESHOLDS': 'samplers',
    'cascade_predictor': 'samplers',
    'ddim_step_reference': 'samplers',
    'initial_noise': 'samplers',
    'make_scheduler': 'samplers',
    'multilevel_predictor': 'samplers',
    'sample': 'samplers',
    'schedule_of': 'samplers',
    'threshold_eps': 'samplers',
    'unet_predictor': 'samplers',
    'CASCADE_VARIANTS': 'upscale',
    'HaarGaussian': 'upscale',
    'LOWRES_VARIANTS': 'upscale',
    'LevelModel': 'upscale',
    'VARIANTS': 'upscale',
    'analytic_models': 'upscale',
    'load_images': 'upscale',
    'load_model': 'upscale',
    'load_models': 'upscale',
    'run_variant': 'upscale',
    'run_variants': 'upscale',
    'sample_variant': 'upscale',
    'save_grid': 'upscale',
    'save_samples': 'upscale',
    'upsample_image': 'upscale',
    'variant_setup': 'upscale',
    'write_analytic_reference': 'upscale',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
