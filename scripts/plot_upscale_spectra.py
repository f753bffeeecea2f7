from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.upscale import plot_upscale_spectra

plot_upscale_spectra(
    snakemake.input.spectra, snakemake.input.metrics, snakemake.output[0], dpi=snakemake.params.dpi
)
