# Input functions and targets of rules/compose.smk (included at its top).

from reschrom.compose.pairs import eta_label, find_pair, pair_ids, sweep_etas

COMPOSE_MODELS = get_model_pattern(get_stage_models("compose"))


def get_compose_spec(model):
    """Stage settings of a composing model (pairs, guidance, steps, sampler, resolution)."""
    return get_stage_settings("compose", model)


def get_compose_etas():
    return sweep_etas(config["compose"]["etas"])


def get_compose_pair_images(model):
    return expand(
        "results/compose/{model}/{pair_id}/eta_{eta}.png",
        model=model,
        pair_id=pair_ids(get_compose_spec(model)),
        eta=[eta_label(e) for e in get_compose_etas()],
    )


def get_compose_outputs():
    models = get_stage_models("compose")
    return (
        expand("results/compose/{model}/metrics.parquet", model=models)
        + expand("results/figures/compose_{model}.png", model=models)
        + expand("results/figures/compose_pairs_{model}.png", model=models)
    )
