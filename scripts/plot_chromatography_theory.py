import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.plots import plot_chromatography_theory

plot_chromatography_theory(snakemake.input[0], snakemake.output[0], dpi=snakemake.params.dpi)
