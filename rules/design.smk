# Schedules and sampling steps designed from a target chromatography (Theorem 1, eq. 18, 34–35):
# per base a monotone time warp with the target level shares, exported for diffusers; the
# resolution shift SNR/k² against simple diffusion's and SD3's; the NFE experiment.
# Theory jobs import no torch; only design_nfe samples a model.


include: "helpers/design.smk"


rule design_schedule:
    output:
        table="results/design/{base}.parquet",
        shares="results/design/{base}_shares.parquet",
        scheduler="results/design/{base}_scheduler.json",
    log:
        "results/logs/design_schedule/{base}.log",
    benchmark:
        "results/benchmarks/design_schedule/{base}.tsv"
    wildcard_constraints:
        base=get_design_pattern(),
    params:
        settings=lambda wc: get_design_settings(wc.base),
    threads: get_threads("default")
    resources:
        **get_resources("default"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/design_schedule.py"


rule plot_design:
    input:
        table="results/design/{base}.parquet",
        shares="results/design/{base}_shares.parquet",
    output:
        report(
            "results/figures/design_{base}.png",
            caption="../report/design_schedule.rst",
            category="Schedule design (Theorem 1, §3)",
            labels={"figure": "designed schedule", "schedule": "{base}"},
        ),
    log:
        "results/logs/plot_design/{base}.log",
    wildcard_constraints:
        base=get_design_pattern(),
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/design_plot.py"


rule design_shift:
    output:
        "results/design/shift.parquet",
    log:
        "results/logs/design_shift/all.log",
    benchmark:
        "results/benchmarks/design_shift/all.tsv"
    params:
        specs=get_design_shift_specs(),
        ratios=config["design"]["shift"]["ratios"],
        n_t=config["design"]["shift"]["n_t"],
    threads: get_threads("default")
    resources:
        **get_resources("default"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/design_shift.py"


rule plot_design_shift:
    input:
        "results/design/shift.parquet",
    output:
        report(
            "results/figures/design_shift.png",
            caption="../report/design_shift.rst",
            category="Schedule design (Theorem 1, §3)",
            labels={"figure": "resolution shift", "schedule": "all"},
        ),
    log:
        "results/logs/plot_design_shift/all.log",
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/design_plot_shift.py"


rule design_nfe:
    input:
        unpack(get_design_nfe_inputs),
    output:
        "results/design/nfe/{model}.parquet",
    log:
        "results/logs/design_nfe/{model}.log",
    benchmark:
        "results/benchmarks/design_nfe/{model}.tsv"
    wildcard_constraints:
        model=get_design_nfe_pattern(),
    priority: 5
    params:
        settings=get_design_nfe_settings(),
        kernel=config["kernel"],
        device=config["device"],
    threads: get_threads("sample")
    resources:
        **get_resources("sample"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/design_nfe.py"


rule plot_design_nfe:
    input:
        "results/design/nfe/{model}.parquet",
    output:
        report(
            "results/figures/design_nfe_{model}.png",
            caption="../report/design_nfe.rst",
            category="Schedule design (Theorem 1, §3)",
            labels={"figure": "steps per NFE", "model": "{model}"},
        ),
    log:
        "results/logs/plot_design_nfe/{model}.log",
    wildcard_constraints:
        model=get_design_nfe_pattern(),
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/design_plot_nfe.py"
