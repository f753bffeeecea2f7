from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.design import plot_shift

plot_shift(snakemake.input[0], snakemake.output[0], dpi=snakemake.params.dpi)
