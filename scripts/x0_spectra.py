from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.measure.trajectory import run_spectra

p = snakemake.params
run_spectra(
    p.model,
    p.settings,
    model=snakemake.wildcards.model,
    table_out=snakemake.output.table,
    snapshots_out=snakemake.output.snapshots,
    n_samples=p.n_samples,
    batch_size=p.batch_size,
    seed=p.seed,
    n_snapshots=p.n_snapshots,
    device=p.device,
)
