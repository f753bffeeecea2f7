from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.sampling.upscale import run_variants

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
