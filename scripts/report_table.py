from reschrom.joblog import log_job

log_job(snakemake)

from reschrom.plots.tables import write_report_table

write_report_table(snakemake.params.kind, snakemake.input[0], snakemake.output[0], name=snakemake.params.name)
