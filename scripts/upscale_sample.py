import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.upscale import run_variant

run_variant(
    snakemake.wildcards.variant,
    snakemake.output.samples,
    snakemake.output.grid,
    model_dirs=dict(snakemake.input.items()),
    kernel=snakemake.params.kernel,
    device=snakemake.params.device,
    threads=snakemake.threads,
    **snakemake.params.sampling,
)
