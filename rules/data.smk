# Datasets (§4.2): level 0 and captions of both splits, then D^m of level 0 per level.


include: "helpers/data.smk"


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
    priority: 20
    params:
        data=lambda wc: get_data_config(wc.dataset),
        seed=config["seed"],
    threads: get_threads("data")
    resources:
        **get_resources("data"),
    conda:
        "../envs/reschrom.yaml"
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
    priority: 20
    params:
        kernel=config["kernel"],
    threads: get_threads("data")
    resources:
        **get_resources("data"),
    conda:
        "../envs/reschrom.yaml"
    script:
        "../scripts/downsample.py"
