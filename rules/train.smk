# Training (§4.2, eq. 20–23): one job per model, each a diffusers pipeline folder.


rule train_lowres:
    input:
        data="results/data/{dataset}/train/level_1.safetensors",
    output:
        directory("results/models/{dataset}/lowres"),
    log:
        "results/logs/train_lowres/{dataset}.log",
    benchmark:
        "results/benchmarks/train_lowres/{dataset}.tsv"
    params:
        kind="lowres",
        level=0,
        model=lambda wc: get_model_cfg("lowres"),
        train=lambda wc: get_train_cfg("lowres"),
        schedule=get_train_schedule(),
        num_levels=config["training"]["num_levels"],
        kernel=config["kernel"],
        seed=config["seed"],
        device=config["device"],
        checkpoints="results/checkpoints/{dataset}/lowres",
    threads: get_threads("train")
    resources:
        **get_resources("train"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/train_model.py"


rule train_residual:
    input:
        data="results/data/{dataset}/train/level_0.safetensors",
    output:
        directory("results/models/{dataset}/residual"),
    log:
        "results/logs/train_residual/{dataset}.log",
    benchmark:
        "results/benchmarks/train_residual/{dataset}.tsv"
    params:
        kind="residual",
        level=0,
        model=lambda wc: get_model_cfg("residual"),
        train=lambda wc: get_train_cfg("residual"),
        schedule=get_train_schedule(),
        num_levels=config["training"]["num_levels"],
        kernel=config["kernel"],
        seed=config["seed"],
        device=config["device"],
        checkpoints="results/checkpoints/{dataset}/residual",
    threads: get_threads("train")
    resources:
        **get_resources("train"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/train_model.py"


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
    params:
        kind="level",
        level=lambda wc: int(wc.m),
        model=lambda wc: get_model_cfg(f"level_{wc.m}"),
        train=lambda wc: get_train_cfg(f"level_{wc.m}"),
        schedule=get_train_schedule(),
        num_levels=config["training"]["num_levels"],
        kernel=config["kernel"],
        seed=config["seed"],
        device=config["device"],
        checkpoints="results/checkpoints/{dataset}/level_{m}",
    threads: get_threads("train")
    resources:
        **get_resources("train"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/train_model.py"


rule train_t2i:
    input:
        unpack(get_t2i_data),
    output:
        directory("results/models/{dataset}/t2i"),
    log:
        "results/logs/train_t2i/{dataset}.log",
    benchmark:
        "results/benchmarks/train_t2i/{dataset}.tsv"
    params:
        kind="t2i",
        level=0,
        model=lambda wc: get_model_cfg("t2i"),
        train=lambda wc: get_train_cfg("t2i"),
        schedule=get_train_schedule(),
        num_levels=config["training"]["num_levels"],
        kernel=config["kernel"],
        seed=config["seed"],
        device=config["device"],
        checkpoints="results/checkpoints/{dataset}/t2i",
    threads: get_threads("train")
    resources:
        **get_resources("train"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/train_model.py"


rule plot_training_loss:
    input:
        "results/models/{dataset}/{model}",
    output:
        report(
            "results/figures/loss_{dataset}_{model}.png",
            caption="../report/training_loss.rst",
            category="Training (§4.2)",
            labels={
                "figure": "loss curve",
                "model": "{model}",
                "dataset": "{dataset}",
            },
        ),
    log:
        "results/logs/plot_training_loss/{dataset}_{model}.log",
    wildcard_constraints:
        model="lowres|residual|t2i|level_[0-9]+",
    params:
        dpi=config["figures"]["dpi"],
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/plot_training_loss.py"
