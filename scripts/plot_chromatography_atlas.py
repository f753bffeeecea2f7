import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.plots import plot_chromatography_atlas

plot_chromatography_atlas(list(snakemake.input), snakemake.output[0], dpi=snakemake.params.dpi)
