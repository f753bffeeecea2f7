from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.upscale import plot_upscale_grid

plot_upscale_grid(
    {v: snakemake.input[v] for v in snakemake.params.rows},
    snakemake.output[0],
    columns=snakemake.params.columns,
    dpi=snakemake.params.dpi,
)
