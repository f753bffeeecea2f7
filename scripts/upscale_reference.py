from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.sampling.upscale import write_analytic_reference

write_analytic_reference(
    snakemake.output[0], snakemake.params.analytic, snakemake.params.num_samples, snakemake.params.seed
)
