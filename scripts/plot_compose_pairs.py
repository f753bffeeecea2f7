from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots_compose import plot_compose_pairs

plot_compose_pairs(
    snakemake.input.metrics,
    snakemake.params.compose_dir,
    snakemake.params.etas,
    snakemake.output[0],
    dpi=snakemake.params.dpi,
)
