# Input functions and targets of rules/data.smk (included at its top).
# get_data_levels() asks the training stage which models it trains (get_model_names(),
# helpers/train.smk): it runs when the targets are listed, after every rule file is included.


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
    for name in get_model_names():
        e = registry.model_entry(config, name)
        if e.get("task") == "t2i":
            top = max(top, int(e.get("level", 0)))
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
