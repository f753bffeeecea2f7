# Measured chromatography of CFG (paper §4.1, Fig. 4 and 8): per-prompt guidance dumps (written
# by shard jobs), aggregation over prompts and per category with the theory joined and bootstrap
# intervals, agreement tables and figures.


include: "helpers/chromatography.smk"


# One job per shard of prompts (chromatography.shard_size): it loads the model once and writes
# the per-prompt dumps of its prompts, batch_prompts prompts per pipeline call. Shards come from
# a stable hash trie of the prompt ids (reschrom.measure.prompts.assign_shards), so adding a
# prompt reruns one shard. Outputs cannot come from a function in Snakemake, hence one rule per
# shard, named guidance_dump_<model>_<shard>.
for _name, _model, _shard, _prompts in get_chromatography_shards():

    rule:
        name:
            _name
        input:
            get_model_input(_model),
        output:
            get_shard_outputs(_model, _prompts),
        log:
            f"results/logs/guidance_dump/{_model}/{_shard}.log",
        benchmark:
            f"results/benchmarks/guidance_dump/{_model}/{_shard}.tsv"
        priority: 5
        params:
            name=_model,
            model=get_model_load_spec(_model),
            settings=get_chromatography_shard_spec(_model),
            prompts=_prompts,
            device=config["device"],
            kernel=config["kernel"],
        threads: get_threads("probe")
        resources:
            **get_resources("probe"),
        conda:
            "../envs/reschrom.yaml"
        script:
            "../scripts/guidance_shard.py"


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
    priority: 5
    params:
        model=lambda wc: get_model_load_spec(wc.model),
        settings=lambda wc: get_chromatography_run_spec(wc.model),
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
        "results/chromatography/{model}_categories.parquet",
    log:
        "results/logs/aggregate_chromatography/{model}.log",
    benchmark:
        "results/benchmarks/aggregate_chromatography/{model}.tsv"
    wildcard_constraints:
        model=get_chromatography_model_pattern(),
    params:
        kernel=config["kernel"],
        n_boot=config["chromatography"]["n_boot"],
        seed=config["seed"],
        categories=lambda wc: get_chromatography_categories(wc.model),
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
        get_figure_dumps,
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


rule plot_chromatography_categories:
    input:
        "results/chromatography/{model}_categories.parquet",
    output:
        report(
            "results/figures/chromatography_categories_{model}.png",
            caption="../report/chromatography_categories.rst",
            category="Measured chromatography (§4.1)",
            labels={
                "figure": "chromatography per prompt category (Fig. 4, 8)",
                "model": "{model}",
            },
        ),
    log:
        "results/logs/plot_chromatography_categories/{model}.log",
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
        "../scripts/plot_chromatography_categories.py"
