import sys

sys.stderr = open(snakemake.log[0], "w")

from reschrom.metrics import write_upscale_metrics

write_upscale_metrics(
    {v: snakemake.input[v] for v in snakemake.params.variants},
    snakemake.input.data,
    snakemake.output.metrics,
    snakemake.output.spectra,
    kernel=snakemake.params.kernel,
    max_data=snakemake.params.max_data,
    threads=snakemake.threads,
)
