# Datasets (§4.2): level 0 and captions of both splits, then D^m of level 0 per level.


def get_data_config(dataset):
    """The `data` config block; `dataset` must be its name."""
    if dataset != config["data"]["name"]:
        raise ValueError(
            f"dataset {dataset!r} is not configured (config key 'data.name' is "
            f"{config['data']['name']!r})"
        )
    return config["data"]


def get_data_levels():
    """Levels m ≥ 1 the workflow stores: 1 (low-resolution model) … num_levels - 1."""
    top = max(1, int(config["training"]["num_levels"]) - 1)
    if config["models"].get("t2i"):
        top = max(top, int(config["models"]["t2i"].get("level", 0)))
    return list(range(1, top + 1))


def get_data_outputs():
    ds = config["data"]["name"]
    return expand(
        "results/data/{dataset}/{split}/level_{m}.safetensors",
        dataset=ds,
        split=["train", "test"],
        m=[0] + get_data_levels(),
    ) + expand(
        "results/data/{dataset}/{split}/captions.parquet",
        dataset=ds,
        split=["train", "test"],
    )


rule prepare_dataset:
    output:
        train="results/data/{dataset}/train/level_0.safetensors",
        test="results/data/{dataset}/test/level_0.safetensors",
        train_captions="results/data/{dataset}/train/captions.parquet",
        test_captions="results/data/{dataset}/test/captions.parquet",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset="[A-Za-z0-9][A-Za-z0-9_-]*",
    conda:
        "../envs/reschrom.yaml"
    threads: get_threads("data")
    resources:
        **get_resources("data"),
    params:
        data=lambda wc: get_data_config(wc.dataset),
        seed=config["seed"],
    script:
        "../scripts/prepare_dataset.py"


rule downsample:
    input:
        "results/data/{dataset}/{split}/level_0.safetensors",
    output:
        "results/data/{dataset}/{split}/level_{m}.safetensors",
    log:
        "results/logs/downsample/{dataset}_{split}_{m}.log",
    benchmark:
        "results/benchmarks/downsample/{dataset}_{split}_{m}.tsv"
    wildcard_constraints:
        dataset="[A-Za-z0-9][A-Za-z0-9_-]*",
        split="train|test",
        m="[1-9][0-9]*",
    conda:
        "../envs/reschrom.yaml"
    threads: get_threads("data")
    resources:
        **get_resources("data"),
    params:
        kernel=config["kernel"],
    script:
        "../scripts/downsample.py"
