from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.training.loop import train_from_files

train_from_files(
    snakemake.params.kind,
    snakemake.input.data,
    snakemake.output[0],
    snakemake.params.checkpoints,
    snakemake.params.model,
    snakemake.params.train,
    snakemake.params.schedule["name"],
    snakemake.params.schedule["spec"],
    captions=snakemake.input.get("captions"),
    level=snakemake.params.level,
    num_levels=snakemake.params.num_levels,
    kernel=snakemake.params.kernel,
    seed=snakemake.params.seed,
    device=snakemake.config["device"],  # not a param: changing it alone never retrains
    threads=snakemake.threads,
)
