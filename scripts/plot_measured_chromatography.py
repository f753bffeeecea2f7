from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.chromatography import plot_measured_chromatography

plot_measured_chromatography(
    snakemake.input[0], snakemake.output[0], model=snakemake.wildcards.model, dpi=snakemake.params.dpi
)
