# Theory (§3, eq. 13–18, Theorem 1): per schedule a table of the time adjustment τ_m and the
# chromatography r_m(t), its two figures, and one atlas of every schedule; no model is loaded.


include: "helpers/theory.smk"


rule theory_table:
    output:
        "results/theory/{schedule}.parquet",
    log:
        "results/logs/theory_table/{schedule}.log",
    benchmark:
        "results/benchmarks/theory_table/{schedule}.tsv"
    params:
        spec=lambda wc: get_schedule_spec(wc.schedule),
        resolution=config["resolution"],
        kernel=config["kernel"],
        n_t=config["theory"]["n_t"],
    threads: get_threads("default")
    resources:
        **get_resources("default"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/theory_table.py"


rule plot_time_adjustment:
    input:
        "results/theory/{schedule}.parquet",
    output:
        report(
            "results/figures/time_adjustment_{schedule}.png",
            caption="../report/time_adjustment.rst",
            category="Theory (§3)",
            labels={"figure": "time adjustment (Fig. 3)", "schedule": "{schedule}"},
        ),
    log:
        "results/logs/plot_time_adjustment/{schedule}.log",
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_time_adjustment.py"


rule plot_chromatography_theory:
    input:
        "results/theory/{schedule}.parquet",
    output:
        report(
            "results/figures/chromatography_theory_{schedule}.png",
            caption="../report/chromatography_theory.rst",
            category="Theory (§3)",
            labels={"figure": "chromatography (Fig. 4 left)", "schedule": "{schedule}"},
        ),
    log:
        "results/logs/plot_chromatography_theory/{schedule}.log",
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_chromatography_theory.py"


rule plot_chromatography_atlas:
    input:
        expand("results/theory/{schedule}.parquet", schedule=config["theory"]["schedules"]),
    output:
        report(
            "results/figures/chromatography_atlas.png",
            caption="../report/chromatography_atlas.rst",
            category="Theory (§3)",
            labels={"figure": "schedule atlas", "schedule": "all"},
        ),
    log:
        "results/logs/plot_chromatography_atlas/all.log",
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_chromatography_atlas.py"
