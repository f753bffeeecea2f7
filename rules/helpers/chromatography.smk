# Input functions, shards and targets of rules/chromatography.smk (included at its top).
# get_chromatography_shards() runs at parse time: the rule file makes one rule per shard.

import functools
import re as _re
import sys

from reschrom.measure.prompts import (
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
    shards of at most chromatography.shard_size (reschrom.measure.prompts.assign_shards: a
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
