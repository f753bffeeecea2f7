from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.design.settings import write_design

write_design(
    snakemake.params.settings,
    snakemake.output.table,
    snakemake.output.shares,
    snakemake.output.scheduler,
)
