import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
# scripts run in their own interpreter: make the library importable there too
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [_SRC, os.environ.get("PYTHONPATH", "")] if p
)

from reschrom.config import ConfigError, validate_config

try:
    validate_config(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
except ConfigError as err:
    sys.stderr.write(f"reschrom: {err}\n")
    sys.exit(1)


def get_resources(group):
    """Resources of a rule group from config['resources'], falling back to 'default'."""
    res = dict(config["resources"].get("default", {}))
    res.update(config["resources"].get(group, {}))
    res.pop("threads", None)
    res.setdefault("mem_mb", 2000)
    res.setdefault("runtime", 20)
    res.setdefault("gpu", 0)
    return res


def get_threads(group):
    """Threads of a rule group from config['resources'], falling back to 'default'."""
    res = dict(config["resources"].get("default", {}))
    res.update(config["resources"].get(group, {}))
    return int(res.get("threads", 1))


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


def get_final_outputs():
    return get_theory_outputs()
