"""The model registry: every model is defined once, by name, under the config's ``models:``.

Kinds (docs/DESIGN.md, "Models have one home"):

* ``trained`` — trained by this workflow from its ``task`` (``lowres`` eq. 20, ``residual``
  eq. 21, ``level`` eq. 23, ``t2i`` text-to-image with ``objective`` ``epsilon``,
  ``v_prediction`` or ``flow_matching``); architecture and ``train`` settings live in the entry; the folder is
  ``results/models/{data.name}/{name}`` (``level`` expands to ``level_0 … level_{M-1}``);
* ``pipeline`` — any diffusers pipeline: ``path`` is a hub id or a local folder (a snapshot),
  ``dtype``, ``call`` (extra ``pipe(...)`` arguments of every call, e.g. FLUX.1-dev's
  ``negative_prompt`` for true CFG);
* ``oracle`` — the analytic Gaussian-mixture oracle (exact ε at any resolution);
* ``module`` — a user's own network: ``path`` (a folder put on ``sys.path``) and
  ``factory: "module:function"``, called as ``factory(device=..., dtype=...)`` (plus ``path=``
  the folder when it has a ``path`` parameter), with ``path`` as the working directory, and
  returning an object of the denoiser contract of :mod:`reschrom.models.contract`.

Stages (``chromatography``, ``compose``, ``spectra``, ``upscale``) name their models and hold
only stage settings: ``<stage>.{measure|run}: [names]``, stage-wide settings, and
``<stage>.overrides.<name>`` for one model. Defaults live in the schema only.

The DAG-time half of this module (everything but :func:`load_model`) imports neither torch nor
diffusers, so Snakemake plans quickly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

KINDS = ("trained", "pipeline", "oracle", "module")
SAMPLERS = ("default", "ddpm", "ddim")
TASKS = ("lowres", "residual", "level", "t2i")
STAGE_SELECTOR = {"chromatography": "measure", "compose": "run", "spectra": "run", "guidance_design": "run"}
"""The key of each stage that lists the model names it runs."""

STAGE_SETTINGS = {
    "chromatography": (
        "prompts", "guidance_scale", "num_inference_steps", "num_samples", "seeds", "resolution",
        "sampler",
    ),
    "compose": (
        "pairs", "templates", "guidance_scale", "num_inference_steps", "resolution", "sampler",
    ),
    "spectra": ("prompts", "guidance_scale", "num_inference_steps", "resolution", "sampler"),
    "guidance_design": ("prompts", "num_samples", "seeds", "num_inference_steps", "resolution", "sampler", "methods"),
}
"""Settings a stage holds once and ``overrides.<name>`` may change for one model."""

_LOAD_KEYS = {
    "trained": ("task", "objective"),
    "pipeline": ("path", "dtype", "call"),
    "oracle": ("concepts", "beta_schedule"),
    "module": ("path", "factory", "dtype"),
}
"""What loading a model of each kind depends on (its rule params): nothing else reruns a stage."""


class RegistryError(ValueError):
    """A model name or entry that is wrong; the message is one line naming the key."""


def model_names(config: Mapping[str, Any]) -> list[str]:
    """Names defined under ``models`` (in order)."""
    return list(config.get("models") or {})


def model_entry(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The ``models.<name>`` entry; ``level_{m}`` falls back to the ``task: level`` entry."""
    models = config.get("models") or {}
    if name in models:
        return models[name]
    if name.startswith("level_"):
        for e in models.values():
            if e.get("kind") == "trained" and e.get("task") == "level":
                return e
    raise RegistryError(_unknown(name, models, "models"))


def _unknown(name: str, models: Mapping[str, Any], key: str) -> str:
    names = ", ".join(models) if models else "(none)"
    return f"config key '{key}': model {name!r} is not in the registry 'models'; defined: {names}"


def trained_names(config: Mapping[str, Any], task: str | None = None) -> list[str]:
    """Registry names of trained models (of one ``task``); a ``level`` entry expands to
    ``level_0 … level_{M-1}`` (M = training.num_levels)."""
    out = []
    M = int((config.get("training") or {}).get("num_levels", 2))
    for n, e in (config.get("models") or {}).items():
        if e.get("kind") != "trained" or (task is not None and e.get("task") != task):
            continue
        if e.get("task") == "level":
            if n.startswith("level_"):
                continue  # a per-level override of the level entry
            out += [f"level_{m}" for m in range(M)]
        else:
            out.append(n)
    return out


def trained_folder(config: Mapping[str, Any], name: str) -> str:
    """``results/models/{data.name}/{name}``: where the workflow writes a trained model."""
    return f"results/models/{config['data']['name']}/{name}"


def stage_models(config: Mapping[str, Any], stage: str) -> list[str]:
    """The model names a stage runs (``chromatography.measure``, ``compose.run``, ``spectra.run``)."""
    sec = config.get(stage) or {}
    key = STAGE_SELECTOR[stage]
    names = list(sec.get(key) or [])
    models = config.get("models") or {}
    for n in names:
        if n not in models:
            raise RegistryError(_unknown(n, models, f"{stage}.{key}"))
    for n in sec.get("overrides") or {}:
        if n not in models:
            raise RegistryError(_unknown(n, models, f"{stage}.overrides"))
    return names


def stage_settings(config: Mapping[str, Any], stage: str, name: str) -> dict[str, Any]:
    """Stage-wide settings with ``<stage>.overrides.<name>`` applied (schema defaults filled)."""
    sec = config.get(stage) or {}
    out = {k: sec[k] for k in STAGE_SETTINGS[stage] if k in sec and sec[k] is not None}
    out.update({k: v for k, v in ((sec.get("overrides") or {}).get(name) or {}).items() if v is not None})
    return out


def load_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What loading model ``name`` needs and nothing more (a rule's params): its kind, the keys
    of :data:`_LOAD_KEYS`, and for a trained model the folder the workflow writes."""
    e = model_entry(config, name)
    kind = e["kind"]
    spec = {"name": name, "kind": kind}
    spec.update({k: e[k] for k in _LOAD_KEYS[kind] if k in e})
    if kind == "trained":
        spec["path"] = trained_folder(config, name)
        spec.setdefault("objective", "epsilon")
    if kind == "module":
        spec["path"] = os.path.abspath(os.path.expanduser(e["path"]))
    return spec


def model_inputs(config: Mapping[str, Any], name: str) -> list[str]:
    """Rule inputs of a model: the folder of a trained model (built by this workflow) or of a
    local pipeline; nothing for the oracle, hub ids and modules (not files Snakemake tracks)."""
    spec = load_spec(config, name)
    if spec["kind"] == "trained":
        return [spec["path"]]
    if spec["kind"] == "pipeline" and os.path.isdir(spec["path"]):
        return [spec["path"]]
    return []


def check_registry(config: Mapping[str, Any]) -> None:
    """DAG-time checks: stage names exist, entries are complete for their kind, module
    factories are importable (statically: no user code runs). Raises :class:`RegistryError`."""
    from reschrom.models.module import ModelContractError, check_module_spec

    models = config.get("models") or {}
    for name, e in models.items():
        kind = e.get("kind")
        if kind == "trained":
            task = e.get("task")
            if task == "t2i" and e.get("objective", "epsilon") != "flow_matching" and "shift" in e:
                raise RegistryError(f"config key 'models.{name}.shift': only a flow_matching objective has a shift")
            if task != "t2i" and ("objective" in e and e["objective"] != "epsilon"):
                raise RegistryError(f"config key 'models.{name}.objective': task {task} trains ε-prediction only")
            if "precondition" in e and (task != "t2i" or e.get("objective", "epsilon") != "epsilon"):
                raise RegistryError(f"config key 'models.{name}.precondition': only a t2i model with objective epsilon is preconditioned")
            if "clip_sample" in e and (task != "t2i" or e.get("objective", "epsilon") == "flow_matching"):
                raise RegistryError(f"config key 'models.{name}.clip_sample': only a t2i model with a DDPM scheduler (epsilon or v_prediction) has it")
            if task != "t2i" and e.get("addition_embed_type") is not None:
                raise RegistryError(f"config key 'models.{name}.addition_embed_type': task {task} has no text to embed (t2i only)")
        if kind == "module":
            try:
                check_module_spec(name, e)
            except ModelContractError as err:
                raise RegistryError(str(err)) from None
    for stage in STAGE_SELECTOR:
        names = stage_models(config, stage)
        for n in names:
            e = models[n]
            if e.get("kind") == "trained" and e.get("task") != "t2i":
                raise RegistryError(
                    f"config key '{stage}.{STAGE_SELECTOR[stage]}': {n!r} is a trained {e.get('task')} model, "
                    "not a text-to-image model with classifier-free guidance"
                )
    tasks: dict[str, list[str]] = {}
    for n, e in models.items():
        if e.get("kind") == "trained" and not n.startswith("level_"):
            tasks.setdefault(e["task"], []).append(n)
    for task in ("lowres", "residual", "level"):
        if len(tasks.get(task, [])) > 1:
            raise RegistryError(f"config key 'models': more than one trained {task} model ({', '.join(tasks[task])})")


def old_layout_error(config: Mapping[str, Any]) -> str | None:
    """A one-line message saying how to rewrite a config of the old layout, or None."""
    if not isinstance(config, Mapping):
        return None
    for stage in STAGE_SELECTOR:
        if isinstance(config.get(stage), Mapping) and "models" in config[stage]:
            return (
                f"config key '{stage}.models': models now live once in the top-level 'models' registry; "
                f"move each entry there (kind: oracle | pipeline | module, a trained model by its name), "
                f"list the names in '{stage}.{STAGE_SELECTOR[stage]}' and put per-model settings "
                f"(prompts, guidance_scale, …) under '{stage}.overrides.<name>'"
            )
    models = config.get("models")
    if not isinstance(models, Mapping):
        return None  # the schema names the wrong type
    for name, e in models.items():
        if isinstance(e, Mapping) and "kind" not in e:
            task = "level" if str(name).startswith("level") else str(name)
            if task in TASKS:
                return (
                    f"config key 'models.{name}': every model needs a kind; a trained model of the old layout "
                    f"becomes '{name}: {{kind: trained, task: {task}, …}}' (the text-to-image model is "
                    "named e.g. toy: {kind: trained, task: t2i, …})"
                )
            return f"config key 'models.{name}': every model needs a kind ({', '.join(KINDS)})"
        if isinstance(e, Mapping) and e.get("kind") == "pipeline" and str(e.get("path", "")).startswith("results/models/"):
            return (
                f"config key 'models.{name}.path': {e['path']} is a model this workflow trains; "
                "refer to it by its registry name (a kind: trained entry), not by its results path"
            )
    return None


# --------------------------------------------------------------------------------------
# loading (run time)
# --------------------------------------------------------------------------------------


def load_model(
    spec: Mapping[str, Any],
    device: Any = "auto",
    *,
    resolution: int | None = None,
    sampler: str = "default",
) -> Any:
    """The one loader: a diffusers pipeline (kinds pipeline, oracle, trained ε text-to-image) or
    a :class:`reschrom.models.module.ModuleModel` (kind module, trained flow-matching text-to-image).

    ``resolution`` sets the oracle's resolution; ``sampler`` (``default``/``ddpm``/``ddim``)
    swaps a pipeline's scheduler for that class built from its own config (the oracle's default
    is ddpm); denoiser models always use the project's DDIM (eq. 4).
    """
    import torch

    from reschrom.models.pipelines import load_pipeline, resolve_device, resolve_dtype

    dev = resolve_device(device)
    kind = spec["kind"]
    name = spec.get("name", "model")
    if sampler not in SAMPLERS:
        raise RegistryError(f"model {name!r}: sampler {sampler!r} is unknown; allowed: {', '.join(SAMPLERS)}")
    if kind == "module":
        from reschrom.models.module import load_module_model

        return load_module_model(name, spec, dev, resolve_dtype(spec.get("dtype", "float32"), dev))
    if kind == "trained" and spec.get("objective") == "flow_matching":
        from reschrom.models.flow import load_flow_t2i
        from reschrom.models.module import ModuleModel

        obj = load_flow_t2i(spec["path"], device=dev, dtype=torch.float32)
        return ModuleModel.from_object(name, obj, factory="reschrom.models.flow:load_flow_t2i", device=dev, dtype=torch.float32)
    if kind == "oracle":
        from reschrom.models.oracle import build_oracle_pipeline

        sched = {"beta_schedule": spec["beta_schedule"]} if "beta_schedule" in spec else None
        return build_oracle_pipeline(
            resolution=int(resolution or 64),
            concepts=spec.get("concepts"),
            sampler="ddpm" if sampler == "default" else sampler,
            scheduler=sched,
            device=dev,
        )
    if kind == "trained":
        pipe = load_pipeline(spec["path"], dev, dtype=torch.float32)
    elif kind == "pipeline":
        pipe = load_pipeline(spec["path"], dev, spec.get("dtype", "auto"))
        pipe.reschrom_call_kwargs = dict(spec.get("call") or {})  # PipelineAdapter.call_kwargs adds them
    else:
        raise RegistryError(f"model {name!r}: kind {kind!r} is unknown; allowed: {', '.join(KINDS)}")
    if sampler != "default":
        import diffusers

        cls = {"ddim": diffusers.DDIMScheduler, "ddpm": diffusers.DDPMScheduler}[sampler]
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    return pipe
