from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.measure.metrics import write_upscale_metrics

write_upscale_metrics(
    {v: snakemake.input[v] for v in snakemake.params.variants},
    snakemake.input.data,
    snakemake.output.metrics,
    snakemake.output.spectra,
    kernel=snakemake.params.kernel,
    max_data=snakemake.params.max_data,
    threads=snakemake.threads,
)
