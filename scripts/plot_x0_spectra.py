from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.compose import plot_x0_spectra

plot_x0_spectra(
    snakemake.input.table, snakemake.input.snapshots, snakemake.output[0], dpi=snakemake.params.dpi
)
