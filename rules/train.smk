# Training (§4.2, eq. 20–23): one job per model, each a diffusers pipeline folder.


def get_model_names():
    """lowres, residual, level_0 … level_{M-1}, t2i (empty when no models are configured)."""
    if not config["models"]:
        return []
    M = int(config["training"]["num_levels"])
    return ["lowres", "residual"] + [f"level_{m}" for m in range(M)] + ["t2i"]


def _model_block(name):
    models = config["models"]
    if name in models:
        return models[name]
    if name.startswith("level_") and "level" in models:
        return models["level"]
    raise ValueError(f"config key 'models.{name}': missing")


def get_model_cfg(name):
    """The architecture of model `name` (its models.<name> block without `train`)."""
    return {k: v for k, v in _model_block(name).items() if k != "train"}


def get_train_cfg(name):
    """Training hyperparameters of model `name`: `training`, overridden by models.<name>.train."""
    shared = {
        k: v
        for k, v in config["training"].items()
        if k not in ("schedule", "num_levels")
    }
    return {**shared, **_model_block(name).get("train", {})}


def get_train_schedule():
    name = config["training"]["schedule"]
    return {"name": name, "spec": config["schedules"][name]}


def get_t2i_data(wildcards):
    lvl = int(config["models"]["t2i"].get("level", 0))
    return {
        "data": f"results/data/{wildcards.dataset}/train/level_{lvl}.safetensors",
        "captions": f"results/data/{wildcards.dataset}/train/captions.parquet",
    }


def get_training_outputs():
    names = get_model_names()
    ds = config["data"]["name"]
    return expand("results/models/{dataset}/{model}", dataset=ds, model=names) + expand(
        "results/figures/loss_{dataset}_{model}.png", dataset=ds, model=names
    )


rule train_lowres:
    input:
        data="results/data/{dataset}/train/level_1.safetensors",
    output:
        directory("results/models/{dataset}/lowres"),
    log:
        "results/logs/train_lowres/{dataset}.log",
    benchmark:
        "results/benchmarks/train_lowres/{dataset}.tsv"
    conda:
        "../envs/reschrom.yaml"
    threads: get_threads("train")
    resources:
        **get_resources("train"),
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
    conda:
        "../envs/reschrom.yaml"
    threads: get_threads("train")
    resources:
        **get_resources("train"),
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
    conda:
        "../envs/reschrom.yaml"
    threads: get_threads("train")
    resources:
        **get_resources("train"),
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
    conda:
        "../envs/reschrom.yaml"
    threads: get_threads("train")
    resources:
        **get_resources("train"),
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
    conda:
        "../envs/reschrom.yaml"
    threads: get_threads("plot")
    resources:
        **get_resources("plot"),
    params:
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/plot_training_loss.py"
