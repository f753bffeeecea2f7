# Input functions and targets of rules/train.smk (included at its top).
# get_model_names() asks the upscaling stage whether it runs (get_upscale_outputs_wanted(),
# helpers/upscale.smk): it runs when inputs and targets are listed, after every file is included.


def get_model_names():
    """Trained models this run needs: those its stages name, and the upscaling models
    (a model that no stage uses is trained only when asked for as a target)."""
    used = []
    for stage in ("chromatography", "compose", "spectra", "guidance_design"):
        used += get_stage_models(stage)
    up = config["upscale"]
    if up["source"] == "trained" and get_upscale_outputs_wanted():
        used += [up["models"]["lowres"], up["models"]["residual"]]
        if "multilevel" in up["variants"]:
            used.append(up["models"]["levels"])
    out = []
    for name in dict.fromkeys(used):
        e = registry.model_entry(config, name)
        if e.get("kind") != "trained":
            continue
        if e["task"] == "level":
            out += registry.trained_names(config, "level")
        else:
            out.append(name)
    return out


def get_trained_pattern(task=None):
    """Wildcard constraint: the trained registry models (of one task)."""
    return get_model_pattern(registry.trained_names(config, task))


def get_model_cfg(name):
    """The architecture of trained model `name` (its entry without kind/task/train)."""
    skip = ("kind", "task", "train")
    return {k: v for k, v in registry.model_entry(config, name).items() if k not in skip}


def get_train_cfg(name):
    """Training hyperparameters of model `name`: `training`, overridden by models.<name>.train."""
    shared = {k: v for k, v in config["training"].items() if k not in ("schedule", "num_levels")}
    return {**shared, **registry.model_entry(config, name).get("train", {})}


def get_train_schedule():
    name = config["training"]["schedule"]
    return {"name": name, "spec": config["schedules"][name]}


def get_t2i_data(wildcards):
    lvl = int(registry.model_entry(config, wildcards.model).get("level", 0))
    return {
        "data": f"results/data/{wildcards.dataset}/train/level_{lvl}.safetensors",
        "captions": f"results/data/{wildcards.dataset}/train/captions.parquet",
    }


def get_trained_models(wildcards):
    """{name: folder} of every trained model of the run on {dataset} (the loss-curve figure)."""
    return {n: f"results/models/{wildcards.dataset}/{n}" for n in get_model_names()}


def get_training_outputs():
    names = get_model_names()
    ds = config["data"]["name"]
    figure = [f"results/figures/loss_{ds}.png"] if names else []
    return expand("results/models/{dataset}/{model}", dataset=ds, model=names) + figure
