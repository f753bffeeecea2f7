import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.plots_training import plot_training_log

plot_training_log(
    snakemake.input[0],
    snakemake.output[0],
    title=f"{snakemake.wildcards.model} — {snakemake.wildcards.dataset}",
    dpi=snakemake.params.dpi,
)
