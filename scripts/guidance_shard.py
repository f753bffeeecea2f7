from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.measure.measurement import write_guidance_shard

write_guidance_shard(
    snakemake.params.model,
    snakemake.params.settings,
    snakemake.params.prompts,
    list(snakemake.output),
    model=snakemake.params.name,
    device=snakemake.params.device,
    kernel=snakemake.params.kernel,
    threads=snakemake.threads,
)
