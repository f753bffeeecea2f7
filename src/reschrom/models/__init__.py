"""Every model the workflow runs, behind one registry and one adapter layer (docs/DESIGN.md,
"Models have one home").

* :mod:`~reschrom.models.registry` — the config's ``models:``: one entry per model, one loader
  (:func:`~reschrom.models.registry.load_model`);
* :mod:`~reschrom.models.contract` — the ε(x_t, ᾱ, cond) contract and the converters from x0/EDM,
  v, flow and VE models; :mod:`~reschrom.models.module` — ``kind: module`` models checked,
  loaded and validated (:class:`~reschrom.models.module.ModuleModel`);
* :mod:`~reschrom.models.families` and :mod:`~reschrom.models.adapters` — diffusers pipelines of
  every family seen through one interface; **add a pipeline family here** (its entry in
  ``families``, an adapter class in ``adapters``);
* :mod:`~reschrom.models.pipelines` — the diffusers pipeline loader; :mod:`~reschrom.models.builders`
  — the project's toy models built from config; :mod:`~reschrom.models.flow` — the rectified-flow
  toy; :mod:`~reschrom.models.precondition` — the flow-velocity preconditioned UNet;
  :mod:`~reschrom.models.oracle` — the exact-posterior model.

May import: :mod:`reschrom.io`, :mod:`reschrom.theory`, :mod:`reschrom.data`.

Every public name of the submodules is also importable from the package itself
(``reschrom.models.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'FlowMatchAdapter': 'adapters',
    'PipelineAdapter': 'adapters',
    'VPAdapter': 'adapters',
    'DDPM_COMPATIBLE': 'builders',
    'EOS': 'builders',
    'PAD': 'builders',
    'UNK': 'builders',
    'build_cond_unet': 'builders',
    'build_ddpm_pipeline': 'builders',
    'build_flow_t2i': 'builders',
    'build_noise_scheduler': 'builders',
    'build_t2i_pipeline': 'builders',
    'build_text_encoder': 'builders',
    'build_unet': 'builders',
    'build_word_tokenizer': 'builders',
    'load_trained_pipeline': 'builders',
    'EpsFn': 'contract',
    'alpha_bar_from_flow_sigma': 'contract',
    'alpha_bar_from_ve_sigma': 'contract',
    'eps_from_flow_velocity': 'contract',
    'eps_from_sigma_eps': 'contract',
    'eps_from_v_predictor': 'contract',
    'eps_from_x0_predictor': 'contract',
    'flow_sigma': 'contract',
    've_sigma': 'contract',
    'FAMILIES': 'families',
    'FLOW_CLOCKS': 'families',
    'NEGATED_OUTPUT': 'families',
    'PREDICTIONS': 'families',
    'PromptEmbeddings': 'families',
    'REFUSED_TWO_CALL': 'families',
    'TWO_CALL_PIPELINES': 'families',
    'call_arg_names': 'families',
    'encode_prompt': 'families',
    'flow_clock': 'families',
    'loop_facts': 'families',
    'output_tensor': 'families',
    'replace_output': 'families',
    'scheduler_sigma': 'families',
    'track_geometry': 'families',
    'unpack_latents': 'families',
    'unsupported_reason': 'families',
    'CLASS_NAME': 'flow',
    'COMPONENTS': 'flow',
    'FlowTextToImage': 'flow',
    'MAX_LENGTH': 'flow',
    'MODEL_FILE': 'flow',
    'OBJECTIVES': 'flow',
    'TIMESTEP_SCALE': 'flow',
    'encode_prompts': 'flow',
    'flow_interpolate': 'flow',
    'is_flow_folder': 'flow',
    'load_flow_t2i': 'flow',
    'time_shift': 'flow',
    'training_sigmas': 'flow',
    'velocity_target': 'flow',
    'ModelContractError': 'module',
    'ModuleModel': 'module',
    'check_module_spec': 'module',
    'is_denoiser': 'module',
    'load_module_model': 'module',
    'CONCEPT_LIBRARY': 'oracle',
    'Concept': 'oracle',
    'DEFAULT_CONCEPTS': 'oracle',
    'ORACLE_SCHEDULER_DEFAULTS': 'oracle',
    'OracleDenoiser': 'oracle',
    'OraclePipeline': 'oracle',
    'build_oracle_pipeline': 'oracle',
    'concept_weights': 'oracle',
    'mean_image': 'oracle',
    'power_spectrum': 'oracle',
    'IF_SCHEDULER_CONFIG': 'pipelines',
    'SD_SCHEDULER_CONFIG': 'pipelines',
    'load_pipeline': 'pipelines',
    'resolve_device': 'pipelines',
    'resolve_dtype': 'pipelines',
    'CONFIG_KEY': 'precondition',
    'PRECONDITIONS': 'precondition',
    'PreconditionedUNet2DConditionModel': 'precondition',
    'alpha_bar_at': 'precondition',
    'alphas_cumprod_of': 'precondition',
    'eps_from_velocity': 'precondition',
    'timestep_of_sigma': 'precondition',
    'KINDS': 'registry',
    'RegistryError': 'registry',
    'SAMPLERS': 'registry',
    'STAGE_SELECTOR': 'registry',
    'STAGE_SETTINGS': 'registry',
    'TASKS': 'registry',
    'check_registry': 'registry',
    'load_model': 'registry',
    'load_spec': 'registry',
    'model_entry': 'registry',
    'model_inputs': 'registry',
    'model_names': 'registry',
    'old_layout_error': 'registry',
    'stage_models': 'registry',
    'stage_settings': 'registry',
    'trained_folder': 'registry',
    'trained_names': 'registry',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
