from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.data.dataset import prepare_dataset

prepare_dataset(
    snakemake.params.data,
    snakemake.params.seed,
    [
        snakemake.output.train,
        snakemake.output.test,
        snakemake.output.train_captions,
        snakemake.output.test_captions,
    ],
)
