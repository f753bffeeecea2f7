# Measured chromatography of CFG (paper §4.1, Fig. 4 and 8): per-prompt guidance dumps,
# aggregation over prompts with the theory joined, agreement tables and figures.
import re as _re

from reschrom.chromatography import PROMPT_ID_PATTERN, prompt_ids, read_prompts


def get_chromatography_measured():
    """The models to measure: chromatography.measure, or every defined model."""
    models = config["chromatography"]["models"]
    names = config["chromatography"].get("measure", list(models))
    for name in names:
        if name not in models:
            sys.stderr.write(
                f"reschrom: config key 'chromatography.measure': {name!r} is not defined under "
                f"'chromatography.models'; defined: {', '.join(sorted(models))}\n"
            )
            sys.exit(1)
    return list(names)


def get_chromatography_model(model):
    """The config entry of chromatography model `model`."""
    return config["chromatography"]["models"][model]


def get_chromatography_run_spec(model):
    """The entry without its prompt list: a dump depends on its own prompt only, so adding a
    prompt leaves the other dumps' params (and hence their jobs) unchanged."""
    return {k: v for k, v in get_chromatography_model(model).items() if k != "prompts"}


def get_chromatography_model_pattern():
    """Wildcard constraint: exactly the configured model names."""
    names = list(config["chromatography"]["models"])
    return "|".join(_re.escape(n) for n in names) if names else "(?!)"


def get_chromatography_prompts(model):
    """{prompt_id: prompt} of `model`: its own `prompts`, else chromatography.prompts (list or TSV)."""
    spec = get_chromatography_model(model)
    prompts = spec.get("prompts", config["chromatography"]["prompts"])
    return prompt_ids(read_prompts(prompts, base=workflow.basedir))


def get_chromatography_prompt(model, prompt_id):
    """The prompt text of `prompt_id` (ids are slugs plus a hash: no raw text in any path)."""
    return get_chromatography_prompts(model)[prompt_id]


def get_chromatography_model_input(wildcards):
    """The model folder as input when it is local (the toy model: results/models/{dataset}/t2i)."""
    spec = get_chromatography_model(wildcards.model)
    path = spec.get("path")
    if spec["kind"] == "pipeline" and path and (path.startswith("results/") or os.path.isdir(path)):
        return [path]
    return []


def get_guidance_dumps(wildcards):
    """Every prompt's guidance dump of one model."""
    ids = get_chromatography_prompts(wildcards.model)
    return expand(
        "results/guidance/{model}/{prompt_id}.parquet",
        model=wildcards.model,
        prompt_id=list(ids),
    )


def get_chromatography_outputs():
    models = get_chromatography_measured()
    outs = (
        expand("results/chromatography/{model}.parquet", model=models)
        + expand("results/chromatography/{model}_agreement.parquet", model=models)
        + expand("results/figures/chromatography_{model}.png", model=models)
        + expand("results/figures/chromatography_prompts_{model}.png", model=models)
    )
    if config["chromatography"]["dump_tensors"]:
        for model in models:
            outs += expand(
                "results/guidance_tensors/{model}/{prompt_id}.safetensors",
                model=model,
                prompt_id=list(get_chromatography_prompts(model)),
            )
    return outs


rule guidance_dump:
    input:
        get_chromatography_model_input,
    output:
        "results/guidance/{model}/{prompt_id}.parquet",
    log:
        "results/logs/guidance_dump/{model}/{prompt_id}.log",
    benchmark:
        "results/benchmarks/guidance_dump/{model}/{prompt_id}.tsv"
    wildcard_constraints:
        model=get_chromatography_model_pattern(),
        prompt_id=PROMPT_ID_PATTERN,
    params:
        spec=lambda wc: get_chromatography_run_spec(wc.model),
        prompt=lambda wc: get_chromatography_prompt(wc.model, wc.prompt_id),
        device=config["device"],
        kernel=config["kernel"],
    threads: get_threads("probe")
    resources:
        **get_resources("probe"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/guidance_dump.py"


rule guidance_tensors:
    input:
        get_chromatography_model_input,
    output:
        "results/guidance_tensors/{model}/{prompt_id}.safetensors",
    log:
        "results/logs/guidance_tensors/{model}/{prompt_id}.log",
    benchmark:
        "results/benchmarks/guidance_tensors/{model}/{prompt_id}.tsv"
    wildcard_constraints:
        model=get_chromatography_model_pattern(),
        prompt_id=PROMPT_ID_PATTERN,
    params:
        spec=lambda wc: get_chromatography_run_spec(wc.model),
        prompt=lambda wc: get_chromatography_prompt(wc.model, wc.prompt_id),
        device=config["device"],
        kernel=config["kernel"],
    threads: get_threads("probe")
    resources:
        **get_resources("probe"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/guidance_tensors.py"


rule aggregate_chromatography:
    input:
        get_guidance_dumps,
    output:
        "results/chromatography/{model}.parquet",
        "results/chromatography/{model}_agreement.parquet",
    log:
        "results/logs/aggregate_chromatography/{model}.log",
    benchmark:
        "results/benchmarks/aggregate_chromatography/{model}.tsv"
    wildcard_constraints:
        model=get_chromatography_model_pattern(),
    params:
        kernel=config["kernel"],
    threads: get_threads("aggregate")
    resources:
        **get_resources("aggregate"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/aggregate_chromatography.py"


rule plot_measured_chromatography:
    input:
        "results/chromatography/{model}.parquet",
    output:
        report(
            "results/figures/chromatography_{model}.png",
            caption="../report/chromatography_measured.rst",
            category="Measured chromatography (§4.1)",
            labels={"figure": "measured chromatography (Fig. 4)", "model": "{model}"},
        ),
    log:
        "results/logs/plot_measured_chromatography/{model}.log",
    wildcard_constraints:
        model=get_chromatography_model_pattern(),
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_measured_chromatography.py"


rule plot_prompt_chromatography:
    input:
        get_guidance_dumps,
    output:
        report(
            "results/figures/chromatography_prompts_{model}.png",
            caption="../report/chromatography_prompts.rst",
            category="Measured chromatography (§4.1)",
            labels={
                "figure": "chromatography per prompt (Fig. 8)",
                "model": "{model}",
            },
        ),
    log:
        "results/logs/plot_prompt_chromatography/{model}.log",
    wildcard_constraints:
        model=get_chromatography_model_pattern(),
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_prompt_chromatography.py"
