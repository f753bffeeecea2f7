import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.upscale import run_variants

run_variants(
    snakemake.params.variants,
    snakemake.output.samples,
    snakemake.output.grids,
    model_dirs=dict(snakemake.input.items()),
    kernel=snakemake.params.kernel,
    device=snakemake.params.device,
    threads=snakemake.threads,
    **snakemake.params.sampling,
)
