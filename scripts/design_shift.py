import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.design import write_shift_table

write_shift_table(snakemake.params.specs, snakemake.params.ratios, snakemake.params.n_t, snakemake.output[0])
