import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.design import write_design

write_design(
    snakemake.params.settings,
    snakemake.output.table,
    snakemake.output.shares,
    snakemake.output.scheduler,
)
