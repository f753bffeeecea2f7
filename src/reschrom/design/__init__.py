"""Schedules designed from a target chromatography and the experiments around them (Theorem 1,
eq. 18, 34–35).

* :mod:`~reschrom.design.warp` — the time warp of a base schedule that reaches target shares
  (:func:`~reschrom.design.warp.design_schedule`);
* :mod:`~reschrom.design.export` — a design as diffusers scheduler configs and sampling steps;
* :mod:`~reschrom.design.settings` — the ``design:`` config section and the stage's tables;
* :mod:`~reschrom.design.shift` — the resolution shift of a schedule;
* :mod:`~reschrom.design.nfe` — the NFE experiment (step placements at equal NFE).

No module imports torch or diffusers at import time.

May import: :mod:`reschrom.io`, :mod:`reschrom.theory`, :mod:`reschrom.data`, :mod:`reschrom.models`,
:mod:`reschrom.sampling`, :mod:`reschrom.measure` (and the other applications, without a cycle).

Every public name of the submodules is also importable from the package itself
(``reschrom.design.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'SET_TIMESTEPS_PARAMS': 'export',
    'base_scheduler_config': 'export',
    'base_time': 'export',
    'ddpm_timesteps': 'export',
    'designed_time_grid': 'export',
    'export_design': 'export',
    'pipeline_kwargs': 'export',
    'scheduler_config': 'export',
    'strictly_decreasing_steps': 'export',
    'trained_betas': 'export',
    'NFE_TASKS': 'nfe',
    'SPACINGS': 'nfe',
    'ddim_scheduler': 'nfe',
    'run_nfe': 'nfe',
    'spacing_timesteps': 'nfe',
    'threshold_hook': 'nfe',
    'write_nfe': 'nfe',
    'base_spec': 'settings',
    'check_design_config': 'settings',
    'check_monotone': 'settings',
    'design_from_settings': 'settings',
    'design_settings': 'settings',
    'design_table': 'settings',
    'model_resolution': 'settings',
    'resolve_target': 'settings',
    'shares_table': 'settings',
    'write_design': 'settings',
    'SHIFT_PAIRS': 'shift',
    'SNRShiftedSchedule': 'shift',
    'derived_alpha_bar': 'shift',
    'sd3_time_shift': 'shift',
    'shift_table': 'shift',
    'snr_shift_scale_alpha_bar': 'shift',
    'write_shift_table': 'shift',
    'Design': 'warp',
    'DesignError': 'warp',
    'MAX_BETA': 'warp',
    'METHODS': 'warp',
    'MET_TOLERANCE': 'warp',
    'SHARE_TOLERANCE': 'warp',
    'TILT_RIDGE': 'warp',
    'WarpedSchedule': 'warp',
    'design_schedule': 'warp',
    'level_shares': 'warp',
    'level_windows': 'warp',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
