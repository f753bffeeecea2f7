from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.theory import plot_chromatography_theory

plot_chromatography_theory(snakemake.input[0], snakemake.output[0], dpi=snakemake.params.dpi)
