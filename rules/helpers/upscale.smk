# Input functions and targets of rules/upscale.smk (included at its top).


def get_upscale_dataset():
    """{dataset} of the upscaling outputs: data.name for trained models, 'analytic' for the
    exact Gaussian model (no training needed)."""
    if config["upscale"]["source"] == "analytic":
        return "analytic"
    return config["data"]["name"]


def get_upscale_variant_files(ext):
    """Output pattern of each configured variant's file (`safetensors` samples or `png` grid)."""
    return [f"results/upscale/{{dataset}}/samples/{v}.{ext}" for v in config["upscale"]["variants"]]


def get_upscale_models(wildcards):
    """Model folders the configured variants sample from, each once: lowres + residual (eq. 22),
    lowres alone (upsampled baselines), level_0 … level_{M-1} (eq. 24); none for the analytic
    source."""
    if config["upscale"]["source"] == "analytic":
        return {}
    root = f"results/models/{wildcards.dataset}"
    names = config["upscale"]["models"]
    out = {}
    for variant in config["upscale"]["variants"]:
        if variant == "multilevel":
            M = int(config["training"]["num_levels"])
            out.update({f"level_{m}": f"{root}/level_{m}" for m in range(M)})
        else:
            out["lowres"] = f"{root}/{names['lowres']}"
            if variant not in ("nearest", "bicubic"):
                out["residual"] = f"{root}/{names['residual']}"
    return out


def get_upscale_data(wildcards):
    """Held-out full-resolution images the metrics compare against."""
    if config["upscale"]["source"] == "analytic":
        return f"results/upscale/{wildcards.dataset}/reference.safetensors"
    return f"results/data/{wildcards.dataset}/test/level_0.safetensors"


def get_upscale_samples(wildcards):
    return {
        v: f"results/upscale/{wildcards.dataset}/samples/{v}.safetensors"
        for v in config["upscale"]["variants"]
    }


def get_upscale_grid_samples(wildcards):
    return {
        v: f"results/upscale/{wildcards.dataset}/samples/{v}.safetensors"
        for v in config["upscale"]["grid_rows"]
    }


def get_upscale_sampling_params():
    """Everything that changes the samples (and nothing that only changes a figure)."""
    up = config["upscale"]
    keys = (
        "source",
        "sampler",
        "eta",
        "num_inference_steps",
        "num_samples",
        "batch_size",
        "seed",
        "threshold",
    )
    out = {k: up[k] for k in keys}
    if up["source"] == "analytic":
        out["analytic"] = {
            k: v for k, v in up["analytic"].items() if k not in ("num_levels", "num_reference")
        }
        out["num_levels"] = int(up["analytic"]["num_levels"])
    else:
        out["num_levels"] = int(config["training"]["num_levels"])
    return out


def get_upscale_outputs_wanted():
    """False when the upscaling source is trained but the registry has no trained models."""
    return config["upscale"]["source"] == "analytic" or bool(registry.trained_names(config))


def get_upscale_outputs():
    """metrics.parquet and the two figures; nothing when no models are configured to train."""
    if not get_upscale_outputs_wanted():
        return []
    ds = get_upscale_dataset()
    return [
        f"results/upscale/{ds}/metrics.parquet",
        f"results/figures/upscale_{ds}.png",
        f"results/figures/upscale_spectra_{ds}.png",
    ]
