"""Measuring the chromatography of a model (paper §4.1) and the quality of its samples.

* :mod:`~reschrom.measure.prompts` — prompt ids, prompt files and shards (runs at planning time);
* :mod:`~reschrom.measure.guidance` — the guidance dump: its columns, undefined steps, reading it;
* :mod:`~reschrom.measure.probe` — :class:`~reschrom.measure.probe.GuidanceProbe`, the per-step CFG
  capture on a diffusers pipeline;
* :mod:`~reschrom.measure.measurement` — a model's dumps, prompt by prompt (the rule entry points);
* :mod:`~reschrom.measure.aggregate`, :mod:`~reschrom.measure.bootstrap`,
  :mod:`~reschrom.measure.agreement` — the chromatography table of a model, its bootstrap interval
  and its agreement with the theory;
* :mod:`~reschrom.measure.trajectory` — x̂0 along sampling and its spectra (Fig. 1);
* :mod:`~reschrom.measure.metrics` — sample metrics against held-out data, caption accuracy.

May import: :mod:`reschrom.io`, :mod:`reschrom.theory`, :mod:`reschrom.data`, :mod:`reschrom.models`,
:mod:`reschrom.sampling`.

Every public name of the submodules is also importable from the package itself
(``reschrom.measure.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'CATEGORY_COLUMNS': 'aggregate',
    'CHROMATOGRAPHY_COLUMNS': 'aggregate',
    'INTERVAL_COLUMNS': 'aggregate',
    'PromptStack': 'aggregate',
    'aggregate_chromatography': 'aggregate',
    'category_table': 'aggregate',
    'chromatography_from_stack': 'aggregate',
    'prompt_chromatography': 'aggregate',
    'stack_prompt_tables': 'aggregate',
    'theory_for_alpha_bar': 'aggregate',
    'write_chromatography': 'aggregate',
    'AGREEMENT_COLUMNS': 'agreement',
    'AGREEMENT_INTERVALS': 'agreement',
    'agreement_table': 'agreement',
    'jensen_shannon': 'agreement',
    'CONFIDENCE': 'bootstrap',
    'bootstrap_means': 'bootstrap',
    'bootstrap_rng': 'bootstrap',
    'percentile_interval': 'bootstrap',
    'DUMP_COLUMNS': 'guidance',
    'GUIDANCE_COLUMNS': 'guidance',
    'UNDEFINED_RATIO': 'guidance',
    'UndefinedStepsWarning': 'guidance',
    'read_dump': 'guidance',
    'warn_undefined': 'guidance',
    'DEFAULT_BATCH_PROMPTS': 'measurement',
    'iter_guidance': 'measurement',
    'measure_guidance': 'measurement',
    'prompt_generators': 'measurement',
    'write_guidance_dump': 'measurement',
    'write_guidance_shard': 'measurement',
    'CLIP_TOLERANCE': 'metrics',
    'caption_accuracy': 'metrics',
    'clip_fraction': 'metrics',
    'data_reference': 'metrics',
    'mean_band_energies': 'metrics',
    'mean_pairwise_distance': 'metrics',
    'mean_rapsd': 'metrics',
    'metrics_tables': 'metrics',
    'sample_metrics': 'metrics',
    'write_upscale_metrics': 'metrics',
    'ENERGY_KINDS': 'probe',
    'GuidanceProbe': 'probe',
    'ProbeResult': 'probe',
    'guidance_frame': 'probe',
    'save_tensors': 'probe',
    'DEFAULT_CATEGORY': 'prompts',
    'PROMPT_FILE_SUFFIXES': 'prompts',
    'PROMPT_ID_PATTERN': 'prompts',
    'PromptFileError': 'prompts',
    'SHARD_PATTERN': 'prompts',
    'assign_shards': 'prompts',
    'prompt_id': 'prompts',
    'prompt_ids': 'prompts',
    'read_prompt_suite': 'prompts',
    'read_prompt_table': 'prompts',
    'read_prompts': 'prompts',
    'shard_bits': 'prompts',
    'SPECTRA_COLUMNS': 'trajectory',
    'SpectraResult': 'trajectory',
    'X0Capture': 'trajectory',
    'capturing_x0': 'trajectory',
    'posterior_mean': 'trajectory',
    'run_spectra': 'trajectory',
    'save_snapshots': 'trajectory',
    'snapshot_steps': 'trajectory',
    'spectra_frame': 'trajectory',
    'x0_spectra': 'trajectory',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
