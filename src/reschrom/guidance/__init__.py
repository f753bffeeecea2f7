"""Guidance designed from the chromatography (beyond the paper): per-band, per-time scales.

* :mod:`~reschrom.guidance.settings` — the methods, the one-line :class:`GuidanceError`, the
  checks of the config's ``guidance_design.methods`` (NumPy and the standard library only:
  :mod:`reschrom.config` runs them while Snakemake plans);
* :mod:`~reschrom.guidance.rules` — the rules w_m(t) on the bands of eq. 19: CFG, interval
  guidance, per-band scales, the chromatography-scheduled rules (eq. 18 via Theorem 1),
  diffusers' FDG and APG guiders wrapped as rules;
* :mod:`~reschrom.guidance.apply` — where they run: a hook for every batched-CFG pipeline of the
  adapter layer, the ``guide`` of the project's DDIM (:func:`reschrom.sampling.cfg.sample_cfg`),
  a recorder of the applied term's band energies;
* :mod:`~reschrom.guidance.guider` — the same rules as a diffusers guider (``BaseGuidance``) for
  Modular Diffusers pipelines;
* :mod:`~reschrom.guidance.experiment`, :mod:`~reschrom.guidance.summary` — the sweep that
  compares them, its bootstrap summaries and Pareto fronts (``summary``: NumPy and pandas only).

``docs/guidance.md`` designs and justifies the rules.

May import: :mod:`reschrom.io`, :mod:`reschrom.theory`, :mod:`reschrom.data`, :mod:`reschrom.models`,
:mod:`reschrom.sampling`, :mod:`reschrom.measure` (an application, layer 6, beside compose and
design); diffusers' guiders.

Every public name of the submodules is also importable from the package itself
(``reschrom.guidance.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'GuidedPipeline': 'apply',
    'RecordingRule': 'apply',
    'denoiser_guide': 'apply',
    'CHROMATOGRAPHY_COLUMNS': 'experiment',
    'DESIGN_COLUMNS': 'experiment',
    'guidance_sweep': 'experiment',
    'oracle_concepts': 'experiment',
    'run_guidance_design': 'experiment',
    'ChromatographyGuidance': 'guider',
    'scheduler_schedule_spec': 'guider',
    'BandRule': 'rules',
    'Chromatography': 'rules',
    'DiffusersGuiderRule': 'rules',
    'as_schedule': 'rules',
    'band_scale': 'rules',
    'make_rule': 'rules',
    'BAND_METHODS': 'settings',
    'CHROMA_METHODS': 'settings',
    'GuidanceError': 'settings',
    'METHODS': 'settings',
    'check_methods': 'settings',
    'check_scale': 'settings',
    'check_window': 'settings',
    'default_share': 'settings',
    'expand_settings': 'settings',
    'model_num_levels': 'settings',
    'scale_value': 'settings',
    'setting_label': 'settings',
    'METRICS': 'summary',
    'paired_difference': 'summary',
    'pareto_front': 'summary',
    'summarise': 'summary',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
