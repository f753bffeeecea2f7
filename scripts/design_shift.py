from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.design.shift import write_shift_table

write_shift_table(snakemake.params.specs, snakemake.params.ratios, snakemake.params.n_t, snakemake.output[0])
