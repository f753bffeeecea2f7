from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.data.dataset import downsample_level

downsample_level(
    snakemake.input[0], int(snakemake.wildcards.m), snakemake.output[0], kernel=snakemake.params.kernel
)
