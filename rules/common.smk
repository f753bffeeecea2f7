import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
# scripts run in their own interpreter: make the library importable there too
# (set here, not expected from the user, hence no `envvars:` assertion)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in [_SRC, os.environ.get("PYTHONPATH", "")] if p))

from reschrom.config import ConfigError, validate_config

try:
    validate_config(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
except ConfigError as err:
    sys.stderr.write(f"reschrom: {err}\n")
    sys.exit(1)


def get_resources(group):
    """Resources of a rule group from config['resources'], falling back to 'default'.

    Returns mem_mb, runtime (minutes) and, only when the group asks for GPUs, gpu: the
    resource that snakemake-executor-plugin-slurm turns into `--gpus=N` and that the
    local profile's global `gpu=1` limit counts. CPU rules declare no gpu at all, so
    they never request one (not even `--gpus=0` or a `gpu_model` set elsewhere).
    """
    res = dict(config["resources"].get("default", {}))
    res.update(config["resources"].get(group, {}))
    res.pop("threads", None)
    res.setdefault("mem_mb", 2000)
    res.setdefault("runtime", 20)
    if int(res.get("gpu", 0)) <= 0:
        res.pop("gpu", None)
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


def get_model_source(spec):
    """A pipeline model's `path` as rule input when it is a local folder (the toy model under
    results/ is built by this workflow): the oracle is built in memory, hub ids are not files."""
    path = spec.get("path")
    if spec["kind"] == "pipeline" and path and (path.startswith("results/") or os.path.isdir(path)):
        return [path]
    return []


def get_final_outputs():
    return (
        get_theory_outputs()
        + get_data_outputs()
        + get_training_outputs()
        + get_chromatography_outputs()
        + get_compose_outputs()
        + get_spectra_outputs()
        + get_upscale_outputs()
    )
