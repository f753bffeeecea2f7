from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.compose.pairs import aggregate_compose

aggregate_compose(list(snakemake.input), snakemake.output[0])
