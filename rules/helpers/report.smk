# The report's tables of a run (rules/report.smk, included at its top): a final target
# list beside get_final_outputs() in `rule all`, called after every rule file is included.


def get_report_tables():
    """The HTML tables of the stages this run has: upscaling metrics, the agreement of each
    measured model, the composing shares of each composing model, the guidance sweep of each
    swept model."""
    out = expand("results/tables/agreement_{model}.html", model=get_chromatography_measured())
    out += expand("results/tables/compose_{model}.html", model=get_stage_models("compose"))
    out += expand("results/tables/guidance_design_{model}.html", model=get_stage_models("guidance_design"))
    if get_upscale_outputs_wanted():
        out.append(f"results/tables/upscale_{get_upscale_dataset()}.html")
    return out
