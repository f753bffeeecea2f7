# Input functions and targets of rules/spectra.smk (included at its top).

SPECTRA_MODELS = get_model_pattern(get_stage_models("spectra"))


def get_spectra_spec(model):
    """Stage settings of a model whose x̂0 spectra are measured (prompts, guidance, steps)."""
    return get_stage_settings("spectra", model)


def get_spectra_outputs():
    models = get_stage_models("spectra")
    return expand("results/spectra/{model}.parquet", model=models) + expand(
        "results/figures/x0_spectra_{model}.png", model=models
    )
