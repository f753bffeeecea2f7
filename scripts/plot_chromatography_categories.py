from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.categories import plot_category_chromatography

plot_category_chromatography(
    snakemake.input[0], snakemake.output[0], model=snakemake.wildcards.model, dpi=snakemake.params.dpi
)
