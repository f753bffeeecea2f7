import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.data import downsample_level

downsample_level(
    snakemake.input[0], int(snakemake.wildcards.m), snakemake.output[0], kernel=snakemake.params.kernel
)
