from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.chromatography import plot_prompt_chromatography

plot_prompt_chromatography(
    list(snakemake.input), snakemake.output[0], model=snakemake.wildcards.model, dpi=snakemake.params.dpi
)
