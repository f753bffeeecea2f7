from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.measure.aggregate import write_chromatography

write_chromatography(
    list(snakemake.input),
    snakemake.output[0],
    snakemake.output[1],
    model=snakemake.wildcards.model,
    kernel=snakemake.params.kernel,
    categories_out=snakemake.output[2],
    categories=snakemake.params.categories,
    n_boot=snakemake.params.n_boot,
    seed=snakemake.params.seed,
)
