# Cascaded upscaling (§4.2, Fig. 5–6, eq. 22, 24): one sampling job per dataset that loads the
# models once and writes every variant, one metrics table, two figures. Sampling params live in
# params, so re-plotting never resamples.


include: "helpers/upscale.smk"


rule upscale_sample:
    input:
        unpack(get_upscale_models),
    output:
        samples=get_upscale_variant_files("safetensors"),
        grids=get_upscale_variant_files("png"),
    log:
        "results/logs/upscale_sample/{dataset}.log",
    benchmark:
        "results/benchmarks/upscale_sample/{dataset}.tsv"
    priority: 5
    params:
        variants=config["upscale"]["variants"],
        sampling=get_upscale_sampling_params(),
        kernel=config["kernel"],
        device=config["device"],
    threads: get_threads("sample")
    resources:
        **get_resources("sample"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/upscale_sample.py"


rule upscale_reference:
    output:
        "results/upscale/{dataset}/reference.safetensors",
    log:
        "results/logs/upscale_reference/{dataset}.log",
    params:
        analytic=lambda wc: {
            k: v
            for k, v in config["upscale"]["analytic"].items()
            if k not in ("num_levels", "num_reference")
        },
        num_samples=config["upscale"]["analytic"]["num_reference"],
        seed=config["upscale"]["seed"] + 1_000_003,
    threads: get_threads("default")
    resources:
        **get_resources("default"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/upscale_reference.py"


rule upscale_metrics:
    input:
        unpack(get_upscale_samples),
        data=get_upscale_data,
    output:
        metrics="results/upscale/{dataset}/metrics.parquet",
        spectra="results/upscale/{dataset}/spectra.parquet",
    log:
        "results/logs/upscale_metrics/{dataset}.log",
    benchmark:
        "results/benchmarks/upscale_metrics/{dataset}.tsv"
    params:
        variants=config["upscale"]["variants"],
        kernel=config["kernel"],
        max_data=config["upscale"]["max_data"],
    threads: get_threads("aggregate")
    resources:
        **get_resources("aggregate"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/upscale_metrics.py"


rule plot_upscale_grid:
    input:
        unpack(get_upscale_grid_samples),
    output:
        report(
            "results/figures/upscale_{dataset}.png",
            caption="../report/upscale_grid.rst",
            category="Upscaling (§4.2)",
            labels={"figure": "cascaded upscaling (Fig. 6)", "dataset": "{dataset}"},
        ),
    log:
        "results/logs/plot_upscale_grid/{dataset}.log",
    wildcard_constraints:
        dataset="(?!spectra_)[A-Za-z0-9_-]+",
    params:
        rows=config["upscale"]["grid_rows"],
        columns=config["upscale"]["grid_columns"],
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_upscale_grid.py"


rule plot_upscale_spectra:
    input:
        spectra="results/upscale/{dataset}/spectra.parquet",
        metrics="results/upscale/{dataset}/metrics.parquet",
    output:
        report(
            "results/figures/upscale_spectra_{dataset}.png",
            caption="../report/upscale_spectra.rst",
            category="Upscaling (§4.2)",
            labels={"figure": "upscaling spectra (RAPSD)", "dataset": "{dataset}"},
        ),
    log:
        "results/logs/plot_upscale_spectra/{dataset}.log",
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_upscale_spectra.py"
