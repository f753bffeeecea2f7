# Time-dependent prompt composing (paper §4.3, eq. 6 and 25, Fig. 7 and 9).


include: "helpers/compose.smk"


rule compose_pair:
    input:
        lambda wc: get_model_input(wc.model),
    output:
        images=expand(
            "results/compose/{{model}}/{{pair_id}}/eta_{eta}.png",
            eta=[eta_label(e) for e in get_compose_etas()],
        ),
        metrics="results/compose/{model}/{pair_id}/metrics.parquet",
        theory="results/compose/{model}/{pair_id}/theory.parquet",
    log:
        "results/logs/compose_pair/{model}/{pair_id}.log",
    benchmark:
        "results/benchmarks/compose_pair/{model}/{pair_id}.tsv"
    wildcard_constraints:
        model=COMPOSE_MODELS,
        pair_id="[a-z0-9-]+",
    priority: 5
    params:
        model=lambda wc: get_model_load_spec(wc.model),
        settings=lambda wc: get_stage_settings("compose", wc.model, drop=("pairs", "templates")),
        pair=lambda wc: find_pair(get_compose_spec(wc.model), wc.pair_id),
        etas=config["compose"]["etas"],
        seed=config["compose"]["seed"],
        weighting=config["compose"]["weighting"],
        width=config["compose"]["width"],
        kernel=config["kernel"],
        device=config["device"],
    threads: get_threads("sample")
    resources:
        **get_resources("sample"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/compose_pair.py"


rule compose_metrics:
    input:
        lambda wc: expand(
            "results/compose/{model}/{pair_id}/metrics.parquet",
            model=wc.model,
            pair_id=pair_ids(get_compose_spec(wc.model)),
        ),
    output:
        "results/compose/{model}/metrics.parquet",
    log:
        "results/logs/compose_metrics/{model}.log",
    wildcard_constraints:
        model=COMPOSE_MODELS,
    threads: get_threads("aggregate")
    resources:
        **get_resources("aggregate"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/compose_metrics.py"


# The two figures of a composing model: the grid (Fig. 7) and, with the same params, all pairs
# (Fig. 9); scripts/plot_compose.py draws the figure its rule names.
rule plot_compose_grid:
    input:
        metrics="results/compose/{model}/metrics.parquet",
        theory=lambda wc: expand(
            "results/compose/{model}/{pair_id}/theory.parquet",
            model=wc.model,
            pair_id=pair_ids(get_compose_spec(wc.model))[0],
        ),
        images=lambda wc: get_compose_pair_images(wc.model),
    output:
        report(
            "results/figures/compose_{model}.png",
            caption="../report/compose_grid.rst",
            category="Prompt composing (§4.3)",
            labels={"figure": "prompt switch at ηT (Fig. 7)", "model": "{model}"},
        ),
    log:
        "results/logs/plot_compose_grid/{model}.log",
    wildcard_constraints:
        model=COMPOSE_MODELS,
    params:
        compose_dir=lambda wc: f"results/compose/{wc.model}",
        etas=config["compose"]["etas"],
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_compose.py"


use rule plot_compose_grid as plot_compose_pairs with:
    input:
        metrics="results/compose/{model}/metrics.parquet",
        images=lambda wc: get_compose_pair_images(wc.model),
    output:
        report(
            "results/figures/compose_pairs_{model}.png",
            caption="../report/compose_pairs.rst",
            category="Prompt composing (§4.3)",
            labels={"figure": "all prompt pairs (Fig. 9)", "model": "{model}"},
        ),
    log:
        "results/logs/plot_compose_pairs/{model}.log",
