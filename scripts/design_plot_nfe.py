import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.plots_design import plot_nfe

plot_nfe(snakemake.input[0], snakemake.output[0], dpi=snakemake.params.dpi)
