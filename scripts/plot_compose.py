from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.compose import plot_compose_grid, plot_compose_pairs

# rules/compose.smk: plot_compose_grid and its `use rule` twin plot_compose_pairs share this script
# (`use rule … with:` cannot change a rule's script); the rule names the figure.
if snakemake.rule == "plot_compose_grid":  # Fig. 7, with the theory table of the first pair
    plot_compose_grid(
        snakemake.input.metrics,
        snakemake.input.theory[0],
        snakemake.params.compose_dir,
        snakemake.params.etas,
        snakemake.output[0],
        dpi=snakemake.params.dpi,
    )
elif snakemake.rule == "plot_compose_pairs":  # Fig. 9
    plot_compose_pairs(
        snakemake.input.metrics,
        snakemake.params.compose_dir,
        snakemake.params.etas,
        snakemake.output[0],
        dpi=snakemake.params.dpi,
    )
else:
    raise ValueError(f"scripts/plot_compose.py: no composing figure for rule {snakemake.rule!r}")
