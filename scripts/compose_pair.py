from reschrom.joblog import log_job

log_job(snakemake)

from pathlib import Path

from reschrom.compose.sweep import run_compose_pair

p = snakemake.params
run_compose_pair(
    p.model,
    p.settings,
    p.pair,
    model=snakemake.wildcards.model,
    etas=p.etas,
    out_dir=str(Path(snakemake.output.metrics).parent),
    metrics_out=snakemake.output.metrics,
    theory_out=snakemake.output.theory,
    seed=p.seed,
    weighting=p.weighting,
    width=p.width,
    kernel=p.kernel,
    device=p.device,
)
