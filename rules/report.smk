# The report's tables (§4.1–4.3): each stage's key Parquet table rendered as HTML, the results of
# the report category "Key tables (§4.1–4.3)" (one subcategory per stage), which the landing page
# (report/workflow.rst) links to. The tables of a run: get_report_tables() in helpers/report.smk.


include: "helpers/report.smk"


rule table_upscale_metrics:
    input:
        "results/upscale/{dataset}/metrics.parquet",
    output:
        report(
            "results/tables/upscale_{dataset}.html",
            caption="../report/table_upscale.rst",
            category="Key tables (§4.1–4.3)",
            subcategory="Upscaling (§4.2)",
            labels={"figure": "metrics table (Fig. 6)", "dataset": "{dataset}"},
        ),
    log:
        "results/logs/table_upscale_metrics/{dataset}.log",
    params:
        kind="upscale",
        name=lambda wc: wc.dataset,
    threads: get_threads("aggregate")
    resources:
        **get_resources("aggregate"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/report_table.py"


# The tables of a model (agreement, composing shares, guidance design): one rule and its `use rule` twins.
rule table_chromatography_agreement:
    input:
        "results/chromatography/{model}_agreement.parquet",
    output:
        report(
            "results/tables/agreement_{model}.html",
            caption="../report/table_agreement.rst",
            category="Key tables (§4.1–4.3)",
            subcategory="Measured chromatography (§4.1)",
            labels={"figure": "agreement table (Fig. 4)", "model": "{model}"},
        ),
    log:
        "results/logs/table_chromatography_agreement/{model}.log",
    wildcard_constraints:
        model=get_chromatography_model_pattern(),
    params:
        kind="agreement",
        name=lambda wc: wc.model,
    threads: get_threads("aggregate")
    resources:
        **get_resources("aggregate"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/report_table.py"


use rule table_chromatography_agreement as table_compose_shares with:
    input:
        "results/compose/{model}/metrics.parquet",
    output:
        report(
            "results/tables/compose_{model}.html",
            caption="../report/table_compose.rst",
            category="Key tables (§4.1–4.3)",
            subcategory="Prompt composing (§4.3)",
            labels={"figure": "level shares table (Fig. 7)", "model": "{model}"},
        ),
    log:
        "results/logs/table_compose_shares/{model}.log",
    wildcard_constraints:
        model=COMPOSE_MODELS,
    params:
        kind="compose",


use rule table_chromatography_agreement as table_guidance_design with:
    input:
        "results/guidance_design/{model}.parquet",
    output:
        report(
            "results/tables/guidance_design_{model}.html",
            caption="../report/table_guidance_design.rst",
            category="Key tables (§4.1–4.3)",
            subcategory="Guidance design (beyond the paper, §4.1)",
            labels={"figure": "guidance methods table", "model": "{model}"},
        ),
    log:
        "results/logs/table_guidance_design/{model}.log",
    wildcard_constraints:
        model=GUIDANCE_DESIGN_MODELS,
    params:
        kind="guidance",
        name=lambda wc: wc.model,
