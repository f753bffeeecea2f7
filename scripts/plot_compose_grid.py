from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots_compose import plot_compose_grid

plot_compose_grid(
    snakemake.input.metrics,
    snakemake.input.theory[0],
    snakemake.params.compose_dir,
    snakemake.params.etas,
    snakemake.output[0],
    dpi=snakemake.params.dpi,
)
