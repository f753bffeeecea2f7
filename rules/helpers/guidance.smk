# Input functions and targets of rules/guidance.smk (included at its top).

GUIDANCE_DESIGN_MODELS = get_model_pattern(get_stage_models("guidance_design"))


def get_guidance_design_settings(model):
    """Stage settings of a swept model (prompts, seeds, steps, methods), overrides applied."""
    return get_stage_settings("guidance_design", model)


def get_guidance_design_data(model):
    """The held-out images a text model's samples are compared with (none for the oracle,
    which draws its own exact held-out data)."""
    if registry.model_entry(config, model).get("kind") == "oracle":
        return []
    return [f"results/data/{config['data']['name']}/test/level_0.safetensors"]


def get_guidance_outputs():
    models = get_stage_models("guidance_design")
    return expand("results/guidance_design/{model}.parquet", model=models) + expand(
        "results/figures/guidance_design_{model}.png", model=models
    )
