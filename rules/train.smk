# Training (§4.2, eq. 20–23): one job per model, each a diffusers pipeline folder.
# Priorities (longest first): data 20, training 10, other model-loading jobs 5, the rest 0. Of the
# jobs that are ready, the long ones heading long chains start first and the quick plots and tables
# fill the cores around them.


include: "helpers/train.smk"


# One rule per kind of model (its data level and wildcard constraint); train_residual and train_t2i
# are train_lowres with those changed (`use rule … with:` keeps the other params, e.g. level=0).
rule train_lowres:
    input:
        data="results/data/{dataset}/train/level_1.safetensors",
    output:
        directory("results/models/{dataset}/{model}"),
    log:
        "results/logs/train_lowres/{dataset}_{model}.log",
    benchmark:
        "results/benchmarks/train_lowres/{dataset}_{model}.tsv"
    wildcard_constraints:
        model=get_trained_pattern("lowres"),
    priority: 10
    params:
        kind="lowres",
        level=0,
        model=lambda wc: get_model_cfg(wc.model),
        train=lambda wc: get_train_cfg(wc.model),
        schedule=get_train_schedule(),
        num_levels=config["training"]["num_levels"],
        kernel=config["kernel"],
        seed=config["seed"],
        checkpoints="results/checkpoints/{dataset}/{model}",
    threads: get_threads("train")
    resources:
        **get_resources("train"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/train_model.py"


use rule train_lowres as train_residual with:
    input:
        data="results/data/{dataset}/train/level_0.safetensors",
    log:
        "results/logs/train_residual/{dataset}_{model}.log",
    benchmark:
        "results/benchmarks/train_residual/{dataset}_{model}.tsv"
    wildcard_constraints:
        model=get_trained_pattern("residual"),
    params:
        kind="residual",


rule train_level:
    input:
        data="results/data/{dataset}/train/level_0.safetensors",
    output:
        directory("results/models/{dataset}/level_{m}"),
    log:
        "results/logs/train_level/{dataset}_{m}.log",
    benchmark:
        "results/benchmarks/train_level/{dataset}_{m}.tsv"
    wildcard_constraints:
        m="[0-9]+",
    priority: 10
    params:
        kind="level",
        level=lambda wc: int(wc.m),
        model=lambda wc: get_model_cfg(f"level_{wc.m}"),
        train=lambda wc: get_train_cfg(f"level_{wc.m}"),
        schedule=get_train_schedule(),
        num_levels=config["training"]["num_levels"],
        kernel=config["kernel"],
        seed=config["seed"],
        checkpoints="results/checkpoints/{dataset}/level_{m}",
    threads: get_threads("train")
    resources:
        **get_resources("train"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/train_model.py"


use rule train_lowres as train_t2i with:
    input:
        unpack(get_t2i_data),
    log:
        "results/logs/train_t2i/{dataset}_{model}.log",
    benchmark:
        "results/benchmarks/train_t2i/{dataset}_{model}.tsv"
    wildcard_constraints:
        model=get_trained_pattern("t2i"),
    params:
        kind="t2i",


rule plot_training_loss:
    input:
        unpack(get_trained_models),
    output:
        report(
            "results/figures/loss_{dataset}.png",
            caption="../report/training_loss.rst",
            category="Training (§4.2)",
            labels={"figure": "loss curves", "dataset": "{dataset}"},
        ),
    log:
        "results/logs/plot_training_loss/{dataset}.log",
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_training_loss.py"
