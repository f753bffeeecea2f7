from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.design import plot_nfe

plot_nfe(snakemake.input[0], snakemake.output[0], dpi=snakemake.params.dpi)
