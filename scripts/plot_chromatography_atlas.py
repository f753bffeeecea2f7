from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.theory import plot_chromatography_atlas

plot_chromatography_atlas(list(snakemake.input), snakemake.output[0], dpi=snakemake.params.dpi)
