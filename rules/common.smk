import os
import re as _re
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
# scripts run in their own interpreter: make the library importable there too
# (set here, not expected from the user, hence no `envvars:` assertion)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in [_SRC, os.environ.get("PYTHONPATH", "")] if p))

from reschrom.config import ConfigError, validate_config

try:
    validate_config(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
except ConfigError as err:
    sys.stderr.write(f"reschrom: {err}\n")
    sys.exit(1)

from reschrom import registry


def _check_cuda():
    """device: cuda (or a GPU resource) on a local run without CUDA: one line, before any job
    (called from `onstart`, when the executor is known: a cluster controller plans on a login
    node without GPUs and its jobs run on GPU nodes, so only local runs are checked)."""
    wants = config["device"] == "cuda" or any(int(r.get("gpu", 0)) > 0 for r in config["resources"].values())
    if not wants or not workflow.local_exec or workflow.remote_exec:
        return
    import torch

    if not torch.cuda.is_available():
        key = "device" if config["device"] == "cuda" else "resources.*.gpu"
        sys.stderr.write(
            f"reschrom: config key '{key}': asks for a GPU, but CUDA is not available on this machine; "
            "use device: auto or cpu and gpu: 0, or run on GPU nodes (--profile profiles/slurm)\n"
        )
        sys.exit(1)


onstart:
    _check_cuda()


def _check_results_writable():
    """An unwritable results/ (or working directory): one line, before any job."""
    res = Path("results")
    where = res if res.exists() else Path(".")
    if not os.access(where, os.W_OK | os.X_OK):
        sys.stderr.write(
            f"reschrom: {where.resolve()} is not writable; fix its permissions (chmod u+w) "
            "or run from a writable copy of the workflow\n"
        )
        sys.exit(1)


_check_results_writable()


def get_model_load_spec(name):
    """What loading registry model `name` needs (its kind, path/factory/…): a rule's params."""
    return registry.load_spec(config, name)


def get_model_input(name):
    """The folder of a trained model or a local pipeline as rule input (else nothing)."""
    return registry.model_inputs(config, name)


def get_stage_settings(stage, name, drop=()):
    """Stage settings of model `name`: the stage's, with overrides.<name> applied."""
    s = registry.stage_settings(config, stage, name)
    return {k: v for k, v in s.items() if k not in drop}


def get_stage_models(stage):
    return registry.stage_models(config, stage)


def get_model_pattern(names):
    """Wildcard constraint: exactly these model names."""
    return "|".join(_re.escape(n) for n in names) if names else "(?!)"


def get_resources(group):
    """Resources of a rule group from config['resources'], falling back to 'default'.

    Returns mem_mb, runtime (minutes) and, only when the group asks for GPUs, gpu: the
    resource that snakemake-executor-plugin-slurm turns into `--gpus=N` and that the
    local profile's global `gpu=1` limit counts. CPU rules declare no gpu at all, so
    they never request one (not even `--gpus=0` or a `gpu_model` set elsewhere).
    """
    res = dict(config["resources"].get("default", {}))
    res.update(config["resources"].get(group, {}))
    res.pop("threads", None)
    res.setdefault("mem_mb", 2000)
    res.setdefault("runtime", 20)
    if int(res.get("gpu", 0)) <= 0:
        res.pop("gpu", None)
    return res


def get_threads(group):
    """Threads of a rule group from config['resources'], falling back to 'default'."""
    res = dict(config["resources"].get("default", {}))
    res.update(config["resources"].get(group, {}))
    return int(res.get("threads", 1))


def get_schedule_spec(name):
    """The config entry of schedule `name`."""
    return config["schedules"][name]


def get_theory_outputs():
    names = config["theory"]["schedules"]
    return (
        expand("results/theory/{schedule}.parquet", schedule=names)
        + expand("results/figures/time_adjustment_{schedule}.png", schedule=names)
        + expand("results/figures/chromatography_theory_{schedule}.png", schedule=names)
        + ["results/figures/chromatography_atlas.png"]
    )


# ---- data (rules/data.smk) ----------------------------------------------------


def get_data_config(dataset):
    """The `data` config block; `dataset` must be its name."""
    if dataset != config["data"]["name"]:
        raise ValueError(
            f"dataset {dataset!r} is not configured (config key 'data.name' is "
            f"{config['data']['name']!r})"
        )
    return config["data"]


def get_data_levels():
    """Levels m ≥ 1 the workflow stores: 1 (low-resolution model) … num_levels - 1."""
    top = max(1, int(config["training"]["num_levels"]) - 1)
    for name in get_model_names():
        e = registry.model_entry(config, name)
        if e.get("task") == "t2i":
            top = max(top, int(e.get("level", 0)))
    return list(range(1, top + 1))


def get_data_outputs():
    ds = config["data"]["name"]
    return expand(
        "results/data/{dataset}/{split}/level_{m}.safetensors",
        dataset=ds,
        split=["train", "test"],
        m=[0] + get_data_levels(),
    ) + expand(
        "results/data/{dataset}/{split}/captions.parquet",
        dataset=ds,
        split=["train", "test"],
    )


# ---- train (rules/train.smk) --------------------------------------------------


def get_model_names():
    """Trained models this run needs: those its stages name, and the upscaling models
    (a model that no stage uses is trained only when asked for as a target)."""
    used = []
    for stage in ("chromatography", "compose", "spectra"):
        used += get_stage_models(stage)
    up = config["upscale"]
    if up["source"] == "trained" and get_upscale_outputs_wanted():
        used += [up["models"]["lowres"], up["models"]["residual"]]
        if "multilevel" in up["variants"]:
            used.append(up["models"]["levels"])
    out = []
    for name in dict.fromkeys(used):
        e = registry.model_entry(config, name)
        if e.get("kind") != "trained":
            continue
        if e["task"] == "level":
            out += registry.trained_names(config, "level")
        else:
            out.append(name)
    return out


def get_trained_pattern(task=None):
    """Wildcard constraint: the trained registry models (of one task)."""
    return get_model_pattern(registry.trained_names(config, task))


def get_model_cfg(name):
    """The architecture of trained model `name` (its entry without kind/task/train)."""
    skip = ("kind", "task", "train")
    return {k: v for k, v in registry.model_entry(config, name).items() if k not in skip}


def get_train_cfg(name):
    """Training hyperparameters of model `name`: `training`, overridden by models.<name>.train."""
    shared = {k: v for k, v in config["training"].items() if k not in ("schedule", "num_levels")}
    return {**shared, **registry.model_entry(config, name).get("train", {})}


def get_train_schedule():
    name = config["training"]["schedule"]
    return {"name": name, "spec": config["schedules"][name]}


def get_t2i_data(wildcards):
    lvl = int(registry.model_entry(config, wildcards.model).get("level", 0))
    return {
        "data": f"results/data/{wildcards.dataset}/train/level_{lvl}.safetensors",
        "captions": f"results/data/{wildcards.dataset}/train/captions.parquet",
    }


def get_trained_models(wildcards):
    """{name: folder} of every trained model of the run on {dataset} (the loss-curve figure)."""
    return {n: f"results/models/{wildcards.dataset}/{n}" for n in get_model_names()}


def get_training_outputs():
    names = get_model_names()
    ds = config["data"]["name"]
    figure = [f"results/figures/loss_{ds}.png"] if names else []
    return expand("results/models/{dataset}/{model}", dataset=ds, model=names) + figure


# ---- chromatography (rules/chromatography.smk) --------------------------------

import functools

from reschrom.chromatography import (
    PROMPT_ID_PATTERN,
    PromptFileError,
    assign_shards,
    read_prompt_suite,
)


def get_chromatography_measured():
    """The registry models to measure (chromatography.measure)."""
    return get_stage_models("chromatography")


def get_chromatography_run_spec(model):
    """The stage settings without the prompt list: a dump depends on its own prompt only, so
    adding a prompt leaves the other dumps' params (and hence their jobs) unchanged."""
    return get_stage_settings("chromatography", model, drop=("prompts", "shard_size", "batch_prompts"))


def get_chromatography_sharding(model):
    """shard_size and batch_prompts of `model`: the stage's, or chromatography.overrides.<model>."""
    sec = config["chromatography"]
    over = sec["overrides"].get(model) or {}
    return {k: int(over.get(k, sec[k])) for k in ("shard_size", "batch_prompts")}


def get_chromatography_shard_spec(model):
    """What a shard job of `model` measures with: the run spec and batch_prompts (prompts per
    pipeline call; a prompt's dump does not depend on it beyond rounding)."""
    return {
        **get_chromatography_run_spec(model),
        "batch_prompts": get_chromatography_sharding(model)["batch_prompts"],
    }


def get_chromatography_model_pattern():
    """Wildcard constraint: exactly the measured model names."""
    return get_model_pattern(get_chromatography_measured())


@functools.cache
def get_chromatography_suite(model):
    """The prompts of `model` (chromatography.prompts or its override: a list or a file) as a
    table prompt_id, prompt, category; a bad prompts file stops here, naming the key."""
    prompts = get_stage_settings("chromatography", model)["prompts"]
    try:
        return read_prompt_suite(prompts, base=workflow.basedir)
    except PromptFileError as err:
        over = config["chromatography"]["overrides"].get(model) or {}
        key = f"chromatography.overrides.{model}" if "prompts" in over else "chromatography"
        sys.stderr.write(f"reschrom: config key '{key}.prompts': {err}\n")
        sys.exit(1)


def get_chromatography_prompts(model):
    """{prompt_id: prompt} of `model` (ids are slugs plus a hash: no raw text in any path)."""
    suite = get_chromatography_suite(model)
    return dict(zip(suite["prompt_id"], suite["prompt"]))


def get_chromatography_categories(model):
    """{prompt_id: category} of `model` ("all" where its prompts have none)."""
    suite = get_chromatography_suite(model)
    return dict(zip(suite["prompt_id"], suite["category"]))


def get_chromatography_prompt(model, prompt_id):
    """The prompt text of `prompt_id`."""
    return get_chromatography_prompts(model)[prompt_id]


def get_chromatography_shards():
    """[(job name, model, shard, {prompt_id: prompt})] of every measured model: its prompts in
    shards of at most chromatography.shard_size (reschrom.chromatography.assign_shards: a
    stable hash trie, so adding a prompt changes one shard's prompts only). Each shard is a rule
    of its own, guidance_dump_<model>_<shard> (Snakemake outputs cannot come from a function),
    whose outputs are the per-prompt dumps of its prompts."""
    out, names = [], set()
    for model in get_chromatography_measured():
        prompts = get_chromatography_prompts(model)
        size = get_chromatography_sharding(model)["shard_size"]
        for shard, ids in assign_shards(prompts, size).items():
            name = _re.sub(r"\W", "_", f"guidance_dump_{model}_{shard}")
            while name in names:  # models a-b and a_b
                name += "_"
            names.add(name)
            out.append((name, model, shard, {i: prompts[i] for i in ids}))
    return out


def get_shard_outputs(model, prompts):
    return expand("results/guidance/{model}/{prompt_id}.parquet", model=model, prompt_id=list(prompts))


def get_chromatography_model_input(wildcards):
    """The model folder as input when it is a trained model or a local pipeline."""
    return get_model_input(wildcards.model)


def get_guidance_dumps(wildcards):
    """Every prompt's guidance dump of one model."""
    ids = get_chromatography_prompts(wildcards.model)
    return expand(
        "results/guidance/{model}/{prompt_id}.parquet",
        model=wildcards.model,
        prompt_id=list(ids),
    )


def get_figure_dumps(wildcards):
    """The dumps the per-prompt figure shows: at most chromatography.figure_prompts prompts,
    taken in turn from each category (in file order), so a large suite keeps a legible figure."""
    suite = get_chromatography_suite(wildcards.model)
    groups = [list(g["prompt_id"]) for _, g in suite.groupby("category", sort=False)]
    picked = []
    for i in range(max(len(g) for g in groups)):
        picked += [g[i] for g in groups if i < len(g)]
    picked = picked[: int(config["chromatography"]["figure_prompts"])]
    return expand("results/guidance/{model}/{prompt_id}.parquet", model=wildcards.model, prompt_id=picked)


def get_chromatography_outputs():
    models = get_chromatography_measured()
    outs = (
        expand("results/chromatography/{model}.parquet", model=models)
        + expand("results/chromatography/{model}_agreement.parquet", model=models)
        + expand("results/chromatography/{model}_categories.parquet", model=models)
        + expand("results/figures/chromatography_{model}.png", model=models)
        + expand("results/figures/chromatography_prompts_{model}.png", model=models)
        + expand("results/figures/chromatography_categories_{model}.png", model=models)
    )
    if config["chromatography"]["dump_tensors"]:
        for model in models:
            outs += expand(
                "results/guidance_tensors/{model}/{prompt_id}.safetensors",
                model=model,
                prompt_id=list(get_chromatography_prompts(model)),
            )
    return outs


# ---- compose (rules/compose.smk) ----------------------------------------------

from reschrom.pairs import eta_label, find_pair, pair_ids, sweep_etas

COMPOSE_MODELS = get_model_pattern(get_stage_models("compose"))


def get_compose_spec(model):
    """Stage settings of a composing model (pairs, guidance, steps, sampler, resolution)."""
    return get_stage_settings("compose", model)


def get_compose_etas():
    return sweep_etas(config["compose"]["etas"])


def get_compose_pair_images(model):
    return expand(
        "results/compose/{model}/{pair_id}/eta_{eta}.png",
        model=model,
        pair_id=pair_ids(get_compose_spec(model)),
        eta=[eta_label(e) for e in get_compose_etas()],
    )


def get_compose_outputs():
    models = get_stage_models("compose")
    return (
        expand("results/compose/{model}/metrics.parquet", model=models)
        + expand("results/figures/compose_{model}.png", model=models)
        + expand("results/figures/compose_pairs_{model}.png", model=models)
    )


# ---- spectra (rules/spectra.smk) ----------------------------------------------

SPECTRA_MODELS = get_model_pattern(get_stage_models("spectra"))


def get_spectra_spec(model):
    """Stage settings of a model whose x̂0 spectra are measured (prompts, guidance, steps)."""
    return get_stage_settings("spectra", model)


def get_spectra_outputs():
    models = get_stage_models("spectra")
    return expand("results/spectra/{model}.parquet", model=models) + expand(
        "results/figures/x0_spectra_{model}.png", model=models
    )


# ---- upscale (rules/upscale.smk) ----------------------------------------------


def get_upscale_dataset():
    """{dataset} of the upscaling outputs: data.name for trained models, 'analytic' for the
    exact Gaussian model (no training needed)."""
    if config["upscale"]["source"] == "analytic":
        return "analytic"
    return config["data"]["name"]


def get_upscale_variant_files(ext):
    """Output pattern of each configured variant's file (`safetensors` samples or `png` grid)."""
    return [f"results/upscale/{{dataset}}/samples/{v}.{ext}" for v in config["upscale"]["variants"]]


def get_upscale_models(wildcards):
    """Model folders the configured variants sample from, each once: lowres + residual (eq. 22),
    lowres alone (upsampled baselines), level_0 … level_{M-1} (eq. 24); none for the analytic
    source."""
    if config["upscale"]["source"] == "analytic":
        return {}
    root = f"results/models/{wildcards.dataset}"
    names = config["upscale"]["models"]
    out = {}
    for variant in config["upscale"]["variants"]:
        if variant == "multilevel":
            M = int(config["training"]["num_levels"])
            out.update({f"level_{m}": f"{root}/level_{m}" for m in range(M)})
        else:
            out["lowres"] = f"{root}/{names['lowres']}"
            if variant not in ("nearest", "bicubic"):
                out["residual"] = f"{root}/{names['residual']}"
    return out


def get_upscale_data(wildcards):
    """Held-out full-resolution images the metrics compare against."""
    if config["upscale"]["source"] == "analytic":
        return f"results/upscale/{wildcards.dataset}/reference.safetensors"
    return f"results/data/{wildcards.dataset}/test/level_0.safetensors"


def get_upscale_samples(wildcards):
    return {
        v: f"results/upscale/{wildcards.dataset}/samples/{v}.safetensors"
        for v in config["upscale"]["variants"]
    }


def get_upscale_grid_samples(wildcards):
    return {
        v: f"results/upscale/{wildcards.dataset}/samples/{v}.safetensors"
        for v in config["upscale"]["grid_rows"]
    }


def get_upscale_sampling_params():
    """Everything that changes the samples (and nothing that only changes a figure)."""
    up = config["upscale"]
    keys = (
        "source",
        "sampler",
        "eta",
        "num_inference_steps",
        "num_samples",
        "batch_size",
        "seed",
        "threshold",
    )
    out = {k: up[k] for k in keys}
    if up["source"] == "analytic":
        out["analytic"] = {
            k: v for k, v in up["analytic"].items() if k not in ("num_levels", "num_reference")
        }
        out["num_levels"] = int(up["analytic"]["num_levels"])
    else:
        out["num_levels"] = int(config["training"]["num_levels"])
    return out


def get_upscale_outputs_wanted():
    """False when the upscaling source is trained but the registry has no trained models."""
    return config["upscale"]["source"] == "analytic" or bool(registry.trained_names(config))


def get_upscale_outputs():
    """metrics.parquet and the two figures; nothing when no models are configured to train."""
    if not get_upscale_outputs_wanted():
        return []
    ds = get_upscale_dataset()
    return [
        f"results/upscale/{ds}/metrics.parquet",
        f"results/figures/upscale_{ds}.png",
        f"results/figures/upscale_spectra_{ds}.png",
    ]


def get_final_outputs():
    return (
        get_theory_outputs()
        + get_data_outputs()
        + get_training_outputs()
        + get_chromatography_outputs()
        + get_compose_outputs()
        + get_spectra_outputs()
        + get_upscale_outputs()
        + get_design_outputs()
    )


# ---- report tables (rules/report.smk) ----------------------------------------


def get_report_tables():
    """The HTML tables of the stages this run has: upscaling metrics, the agreement of each
    measured model, the composing shares of each composing model."""
    out = expand("results/tables/agreement_{model}.html", model=get_chromatography_measured())
    out += expand("results/tables/compose_{model}.html", model=get_stage_models("compose"))
    if get_upscale_outputs_wanted():
        out.append(f"results/tables/upscale_{get_upscale_dataset()}.html")
    return out


# ---- design (rules/design.smk) ------------------------------------------------

from reschrom.design import DesignError, check_design_config, design_settings

try:
    check_design_config(config)
except DesignError as err:
    sys.stderr.write(f"reschrom: {err}\n")
    sys.exit(1)


def get_design_pattern():
    """Wildcard constraint: exactly the design bases (design.schedules)."""
    return get_model_pattern(config["design"]["schedules"])


def get_design_settings(base):
    """What the design of `base` depends on: its schedule, levels, target, method, steps."""
    return design_settings(config, base)


def get_design_shift_specs():
    """{name: schedule spec} of the resolution-shift bases (design.shift.schedules)."""
    from reschrom.design import base_spec

    names = config["design"]["shift"]["schedules"]
    return {n: base_spec(config, n, "design.shift.schedules") for n in names}


def get_design_nfe_pattern():
    return get_model_pattern(config["design"]["nfe"]["run"])


def get_design_nfe_settings():
    return dict(config["design"]["nfe"])


def get_design_nfe_inputs(wildcards):
    """The trained model and its held-out data (the level it generates; captions of a t2i model)."""
    ds = config["data"]["name"]
    e = registry.model_entry(config, wildcards.model)
    lvl = int(e.get("level", 0)) if e.get("task") == "t2i" else 1
    out = {
        "model": registry.trained_folder(config, wildcards.model),
        "data": f"results/data/{ds}/test/level_{lvl}.safetensors",
    }
    if e.get("task") == "t2i":
        out["captions"] = f"results/data/{ds}/test/captions.parquet"
    return out


def get_design_outputs():
    sec = config["design"]
    bases = sec["schedules"]
    out = (
        expand("results/design/{base}.parquet", base=bases)
        + expand("results/design/{base}_shares.parquet", base=bases)
        + expand("results/design/{base}_scheduler.json", base=bases)
        + expand("results/figures/design_{base}.png", base=bases)
    )
    if sec["shift"]["schedules"]:
        out += ["results/design/shift.parquet", "results/figures/design_shift.png"]
    models = sec["nfe"]["run"]
    out += expand("results/design/nfe/{model}.parquet", model=models)
    out += expand("results/figures/design_nfe_{model}.png", model=models)
    return out
