# Coarse-to-fine generation: spectra of the change of x̂0 along sampling trajectories (paper Fig. 1, eq. 7).


include: "helpers/spectra.smk"


rule x0_spectra:
    input:
        lambda wc: get_model_input(wc.model),
    output:
        table="results/spectra/{model}.parquet",
        snapshots="results/spectra/{model}_snapshots.safetensors",
    log:
        "results/logs/x0_spectra/{model}.log",
    benchmark:
        "results/benchmarks/x0_spectra/{model}.tsv"
    wildcard_constraints:
        model=SPECTRA_MODELS,
    priority: 5
    params:
        model=lambda wc: get_model_load_spec(wc.model),
        settings=lambda wc: get_spectra_spec(wc.model),
        n_samples=config["spectra"]["n_samples"],
        batch_size=config["spectra"]["batch_size"],
        n_snapshots=config["spectra"]["n_snapshots"],
        seed=config["spectra"]["seed"],
        device=config["device"],
    threads: get_threads("sample")
    resources:
        **get_resources("sample"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/x0_spectra.py"


rule plot_x0_spectra:
    input:
        table="results/spectra/{model}.parquet",
        snapshots="results/spectra/{model}_snapshots.safetensors",
    output:
        report(
            "results/figures/x0_spectra_{model}.png",
            caption="../report/x0_spectra.rst",
            category="Coarse-to-fine (Fig. 1)",
            labels={"figure": "x̂0 spectra (Fig. 1)", "model": "{model}"},
        ),
    log:
        "results/logs/plot_x0_spectra/{model}.log",
    wildcard_constraints:
        model=SPECTRA_MODELS,
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_x0_spectra.py"
