from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.design import plot_design

plot_design(snakemake.input.table, snakemake.input.shares, snakemake.output[0], dpi=snakemake.params.dpi)
