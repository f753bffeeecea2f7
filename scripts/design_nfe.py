from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.design.nfe import write_nfe

write_nfe(
    snakemake.input.model,
    snakemake.input.data,
    snakemake.output[0],
    name=snakemake.wildcards.model,
    settings=snakemake.params.settings,
    captions_path=snakemake.input.get("captions"),
    kernel=snakemake.params.kernel,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
