from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.training import plot_training_logs

plot_training_logs(
    dict(snakemake.input.items()),
    snakemake.output[0],
    dataset=snakemake.wildcards.dataset,
    dpi=snakemake.params.dpi,
)
