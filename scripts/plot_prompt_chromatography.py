import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.plots_chromatography import plot_prompt_chromatography

plot_prompt_chromatography(
    list(snakemake.input), snakemake.output[0], model=snakemake.wildcards.model, dpi=snakemake.params.dpi
)
