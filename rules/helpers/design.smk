# Input functions and targets of rules/design.smk (included at its top). The design config is
# checked in common.smk, with the rest of the config, before any rule file is read.

from reschrom.design.settings import design_settings


def get_design_pattern():
    """Wildcard constraint: exactly the design bases (design.schedules)."""
    return get_model_pattern(config["design"]["schedules"])


def get_design_settings(base):
    """What the design of `base` depends on: its schedule, levels, target, method, steps."""
    return design_settings(config, base)


def get_design_shift_specs():
    """{name: schedule spec} of the resolution-shift bases (design.shift.schedules)."""
    from reschrom.design.settings import base_spec

    names = config["design"]["shift"]["schedules"]
    return {n: base_spec(config, n, "design.shift.schedules") for n in names}


def get_design_nfe_pattern():
    return get_model_pattern(config["design"]["nfe"]["run"])


def get_design_nfe_settings():
    return dict(config["design"]["nfe"])


def get_design_nfe_inputs(wildcards):
    """The trained model and its held-out data (the level it generates; captions of a t2i model)."""
    ds = config["data"]["name"]
    e = registry.model_entry(config, wildcards.model)
    lvl = int(e.get("level", 0)) if e.get("task") == "t2i" else 1
    out = {
        "model": registry.trained_folder(config, wildcards.model),
        "data": f"results/data/{ds}/test/level_{lvl}.safetensors",
    }
    if e.get("task") == "t2i":
        out["captions"] = f"results/data/{ds}/test/captions.parquet"
    return out


def get_design_outputs():
    sec = config["design"]
    bases = sec["schedules"]
    out = (
        expand("results/design/{base}.parquet", base=bases)
        + expand("results/design/{base}_shares.parquet", base=bases)
        + expand("results/design/{base}_scheduler.json", base=bases)
        + expand("results/figures/design_{base}.png", base=bases)
    )
    if sec["shift"]["schedules"]:
        out += ["results/design/shift.parquet", "results/figures/design_shift.png"]
    models = sec["nfe"]["run"]
    out += expand("results/design/nfe/{model}.parquet", model=models)
    out += expand("results/figures/design_nfe_{model}.png", model=models)
    return out
