# Input functions and targets of rules/theory.smk (included at its top).


def get_schedule_spec(name):
    """The config entry of schedule `name`."""
    return config["schedules"][name]


def get_theory_outputs():
    names = config["theory"]["schedules"]
    return (
        expand("results/theory/{schedule}.parquet", schedule=names)
        + expand("results/figures/time_adjustment_{schedule}.png", schedule=names)
        + expand("results/figures/chromatography_theory_{schedule}.png", schedule=names)
        + ["results/figures/chromatography_atlas.png"]
    )
