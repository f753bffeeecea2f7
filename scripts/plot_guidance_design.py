from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.guidance import plot_guidance_design

p = snakemake.params
plot_guidance_design(
    snakemake.input[0], snakemake.output[0], n_boot=p.n_boot, seed=p.seed, dpi=p.dpi
)
