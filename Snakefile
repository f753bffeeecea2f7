# reschrom: Resolution Chromatography of Diffusion Models, as a Snakemake workflow.
# Run:  snakemake --cores N            (embedded default, config.yaml)
#       snakemake --profile profiles/slurm --configfile configs/paper.yaml


include: "rules/config.smk"


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/theory.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/chromatography.smk"
include: "rules/compose.smk"
include: "rules/spectra.smk"
include: "rules/upscale.smk"
include: "rules/design.smk"
include: "rules/guidance.smk"
include: "rules/report.smk"


# a stage emptied on purpose (chromatography.measure: [] …) runs without it: one line, at planning
if workflow.is_main_process:
    from reschrom.config import empty_stage_notices

    for _notice in empty_stage_notices(config):
        sys.stderr.write(_notice + "\n")


rule all:
    default_target: True
    input:
        get_final_outputs(),
        get_report_tables(),
