"""The theory of the paper: noise schedules, the time adjustment, the intensity factor and the
chromatography, the image pyramid, the level equations and the RAPSD.

* :mod:`~reschrom.theory.schedules` — noise schedules (ᾱ, SNR and its inverse) of every family
  (DDPM tables, cosine, natural, flow matching, EDM, a diffusers ``scheduler_config.json``);
  **add a schedule here** (:func:`~reschrom.theory.schedules.build_schedule`);
* :mod:`~reschrom.theory.resolution` — time adjustment τ_m, intensity factor λ^(m),
  chromatography r_m (eq. 13–18, 34) and the theory tables;
* :mod:`~reschrom.theory.pyramid` — D, U and the resolution bands (eq. 19);
* :mod:`~reschrom.theory.levels` — the level equations of training and sampling (eq. 1, 7,
  14–16, 21, 23, 24) and Algorithm 1's multi-resolution threshold;
* :mod:`~reschrom.theory.spectra` — the radially averaged power spectral density.

``schedules`` and ``resolution`` use NumPy only (the theory jobs and the config check start
without torch); ``pyramid``, ``levels`` and ``spectra`` use torch.

May import: :mod:`reschrom.io` (the layer below). Nothing of data, models or above.

Every public name of the submodules is also importable from the package itself
(``reschrom.theory.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'PREDICTION_TYPES': 'levels',
    'compose_levels': 'levels',
    'eps_from_x0': 'levels',
    'forward_diffuse': 'levels',
    'level_input': 'levels',
    'level_noise': 'levels',
    'level_target': 'levels',
    'level_time': 'levels',
    'level_x0': 'levels',
    'multires_static_threshold': 'levels',
    'posterior_mean': 'levels',
    'residual_target': 'levels',
    'x0_from_eps': 'levels',
    'band_decompose': 'pyramid',
    'band_energies': 'pyramid',
    'band_reconstruct': 'pyramid',
    'check_batch': 'pyramid',
    'coarse_to_fine_clamp': 'pyramid',
    'downsample': 'pyramid',
    'project': 'pyramid',
    'relative_band_energies': 'pyramid',
    'upsample': 'pyramid',
    'THEORY_COLUMNS': 'resolution',
    'alpha_bar_tau': 'resolution',
    'chromatography': 'resolution',
    'chromatography_derivative': 'resolution',
    'chromatography_natural': 'resolution',
    'intensity_factor': 'resolution',
    'level_resolutions': 'resolution',
    'num_levels': 'resolution',
    'peak_times': 'resolution',
    'theory_table': 'resolution',
    'time_adjustment': 'resolution',
    'write_theory_table': 'resolution',
    'ArrayLike': 'schedules',
    'CosineSchedule': 'schedules',
    'DDPM_BETA_SCHEDULES': 'schedules',
    'DEFAULT_SCHEDULES': 'schedules',
    'DiscreteSchedule': 'schedules',
    'EDMSchedule': 'schedules',
    'FlowMatchingSchedule': 'schedules',
    'LOG_SNR_LIMIT': 'schedules',
    'NaturalSchedule': 'schedules',
    'ReparametrizedSchedule': 'schedules',
    'SCHEDULE_TYPES': 'schedules',
    'Schedule': 'schedules',
    'alpha_bar_from_log_snr': 'schedules',
    'build_schedule': 'schedules',
    'ddpm_alphas_cumprod': 'schedules',
    'ddpm_betas': 'schedules',
    'ddpm_schedule': 'schedules',
    'log_snr_from_alpha_bar': 'schedules',
    'schedule_from_config_file': 'schedules',
    'schedule_from_diffusers': 'schedules',
    'log_spectral_distance': 'spectra',
    'radial_bins': 'spectra',
    'rapsd': 'spectra',
    'spectral_slope': 'spectra',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
