# reschrom: Resolution Chromatography of Diffusion Models, as a Snakemake workflow.
# Run:  snakemake --cores N            (embedded default, config.yaml)
#       snakemake --profile profiles/slurm --configfile configs/paper.yaml


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/theory.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/chromatography.smk"
include: "rules/compose.smk"
include: "rules/spectra.smk"
include: "rules/upscale.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
