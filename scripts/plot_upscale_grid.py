import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.plots_upscale import plot_upscale_grid

plot_upscale_grid(
    {v: snakemake.input[v] for v in snakemake.params.rows},
    snakemake.output[0],
    columns=snakemake.params.columns,
    dpi=snakemake.params.dpi,
)
