# Guidance designed from the chromatography (beyond the paper; docs/guidance.md): every method
# over its scales at the same NFE and seeds, per model; a Pareto figure and a table per model.


include: "helpers/guidance.smk"


rule guidance_design:
    input:
        model=lambda wc: get_model_input(wc.model),
        data=lambda wc: get_guidance_design_data(wc.model),
    output:
        table="results/guidance_design/{model}.parquet",
        chromatography="results/guidance_design/{model}_chromatography.parquet",
    log:
        "results/logs/guidance_design/{model}.log",
    benchmark:
        "results/benchmarks/guidance_design/{model}.tsv"
    wildcard_constraints:
        model=GUIDANCE_DESIGN_MODELS,
    priority: 5
    params:
        model=lambda wc: get_model_load_spec(wc.model),
        settings=lambda wc: get_guidance_design_settings(wc.model),
        kernel=config["kernel"],
        device=config["device"],
    threads: get_threads("sample")
    resources:
        **get_resources("sample"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/guidance_design.py"


rule plot_guidance_design:
    input:
        "results/guidance_design/{model}.parquet",
    output:
        report(
            "results/figures/guidance_design_{model}.png",
            caption="../report/guidance_design.rst",
            category="Guidance design (beyond the paper, §4.1)",
            labels={"figure": "accuracy against diversity and LSD", "model": "{model}"},
        ),
    log:
        "results/logs/plot_guidance_design/{model}.log",
    wildcard_constraints:
        model=GUIDANCE_DESIGN_MODELS,
    params:
        n_boot=config["guidance_design"]["n_boot"],
        seed=config["seed"],
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_guidance_design.py"
