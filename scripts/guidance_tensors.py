from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.measure.measurement import write_guidance_dump

write_guidance_dump(
    snakemake.params.model,
    snakemake.params.settings,
    snakemake.params.prompt,
    None,
    model=snakemake.wildcards.model,
    device=snakemake.params.device,
    kernel=snakemake.params.kernel,
    threads=snakemake.threads,
    tensors_out=snakemake.output[0],
)
