from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.guidance.experiment import run_guidance_design

p = snakemake.params
run_guidance_design(
    p.model,
    p.settings,
    model=snakemake.wildcards.model,
    out=snakemake.output.table,
    chromatography_out=snakemake.output.chromatography,
    data_path=snakemake.input.data[0] if snakemake.input.data else None,
    kernel=p.kernel,
    device=p.device,
    threads=snakemake.threads,
)
