import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.pairs import aggregate_compose

aggregate_compose(list(snakemake.input), snakemake.output[0])
