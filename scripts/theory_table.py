from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.theory.resolution import write_theory_table

write_theory_table(
    snakemake.wildcards.schedule,
    snakemake.params.spec,
    snakemake.output[0],
    resolution=snakemake.params.resolution,
    kernel=snakemake.params.kernel,
    n_t=snakemake.params.n_t,
)
