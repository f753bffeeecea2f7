"""reschrom: Resolution Chromatography of Diffusion Models (Hwang, Park and Jo).

The library is split into subpackages by role, in layers: a module imports only its own layer
and the layers below (``tests/project/test_layout.py`` declares the order and checks it, with no import
cycle and no module over 550 lines):

====  ===============================  =====================================================
layer  where                            what
====  ===============================  =====================================================
0     :mod:`reschrom.io`,              atomic Parquet/safetensors/PNG files and image batches;
      :mod:`reschrom.joblog`,          a job's log (its failure as one line on the console);
      :mod:`reschrom.resources`,       rule resources from benchmarks; lazy re-exports
      :mod:`reschrom.lazy`
1     :mod:`reschrom.theory`           schedules, τ_m, λ^(m), r_m (eq. 13–18, 34), the pyramid
                                       (eq. 19, Algorithm 1), the level equations, RAPSD
2     :mod:`reschrom.data`             the shapes set, image folders, splits and their levels
3     :mod:`reschrom.models`           the registry, the ε contract and converters, ``kind:
                                       module`` models, the adapters of every pipeline family,
                                       loaders, the toy builders, flow, preconditioning, oracle
4     :mod:`reschrom.sampling`         samplers (eq. 22, 24), DDIM with CFG for denoisers,
                                       cascaded upscaling
5     :mod:`reschrom.measure`          prompts and shards, the probe, dumps, aggregation,
                                       bootstrap, agreement, x̂0 capture, sample metrics
6     :mod:`reschrom.compose`,         applications: prompt composing (eq. 6, 25), designed
      :mod:`reschrom.design`,          schedules and their experiments, training (eq. 20–23),
      :mod:`reschrom.training`,        per-band guidance rules designed from the
      :mod:`reschrom.guidance`         chromatography (eq. 18–19) and their experiment
7     :mod:`reschrom.plots`            figures and report tables (no torch)
8     :mod:`reschrom.config`           the config check (Snakemake planning time)
====  ===============================  =====================================================

Each subpackage's docstring says what lives there and what it may import; every public name of
a subpackage's modules is importable from the subpackage (``reschrom.compose.composer.PromptComposer``).

**The stable public API** is importable from ``reschrom`` itself (:data:`API`): the probe, the
composer and its weight functions, the model registry and the oracle, the theory functions,
the schedule design, the converters of the ε contract and the workflow's entry points. These
names are imported on first use (PEP 562, :mod:`reschrom.lazy`): ``import reschrom`` and
``import reschrom.config`` (run while Snakemake plans) load neither torch nor diffusers.

``reschrom.precondition`` is kept as an alias of :mod:`reschrom.models.precondition`: model
folders saved before the subpackages name it in their ``model_index.json``.
"""

from reschrom.lazy import lazy_exports

__version__ = "0.1.0"

API: dict[str, str] = {
    # theory (eq. 13–19, 34)
    "build_schedule": "theory.schedules",
    "time_adjustment": "theory.resolution",
    "intensity_factor": "theory.resolution",
    "alpha_bar_tau": "theory.resolution",
    "chromatography": "theory.resolution",
    "chromatography_natural": "theory.resolution",
    "num_levels": "theory.resolution",
    "level_resolutions": "theory.resolution",
    "theory_table": "theory.resolution",
    "band_energies": "theory.pyramid",
    "relative_band_energies": "theory.pyramid",
    "downsample": "theory.pyramid",
    "upsample": "theory.pyramid",
    "rapsd": "theory.spectra",
    # models
    "load_model": "models.registry",
    "build_oracle_pipeline": "models.oracle",
    "load_pipeline": "models.pipelines",
    "PipelineAdapter": "models.adapters",
    "ModuleModel": "models.module",
    "load_module_model": "models.module",
    "eps_from_x0_predictor": "models.contract",
    "eps_from_v_predictor": "models.contract",
    "eps_from_flow_velocity": "models.contract",
    "eps_from_sigma_eps": "models.contract",
    # sampling
    "sample_cfg": "sampling.cfg",
    # measuring (§4.1)
    "GuidanceProbe": "measure.probe",
    "ProbeResult": "measure.probe",
    "prompt_id": "measure.prompts",
    "measure_guidance": "measure.measurement",
    "aggregate_chromatography": "measure.aggregate",
    "agreement_table": "measure.agreement",
    "capturing_x0": "measure.trajectory",
    # composing (§4.3)
    "PromptComposer": "compose.composer",
    "heaviside_weights": "compose.weights",
    "linear_weights": "compose.weights",
    "sigmoid_weights": "compose.weights",
    "band_weights": "compose.weights",
    "make_weights": "compose.weights",
    # designed schedules
    "design_schedule": "design.warp",
    "export_design": "design.export",
    "shift_table": "design.shift",
    # training
    "TrainSpec": "training.spec",
    "train": "training.loop",
    # the workflow's entry points (scripts/*.py call these with snakemake.input/output/params)
    "validate_config": "config",
    "write_theory_table": "theory.resolution",
    "prepare_dataset": "data.dataset",
    "train_from_files": "training.loop",
    "write_guidance_shard": "measure.measurement",
    "write_chromatography": "measure.aggregate",
    "run_spectra": "measure.trajectory",
    "run_compose_pair": "compose.sweep",
    "run_variants": "sampling.upscale",
    "write_upscale_metrics": "measure.metrics",
    "write_design": "design.settings",
    "write_shift_table": "design.shift",
    "write_nfe": "design.nfe",
}
"""The stable public API: name → the module under ``reschrom`` that defines it."""

__all__ = sorted(API)
__getattr__, __dir__ = lazy_exports(__name__, API)
