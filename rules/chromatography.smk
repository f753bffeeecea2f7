# Measured chromatography of CFG (paper §4.1, Fig. 4 and 8): per-prompt guidance dumps,
# aggregation over prompts with the theory joined, agreement tables and figures.


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
