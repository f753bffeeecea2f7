import os
import re as _re
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

from reschrom.models import registry


def _check_cuda():
    """device: cuda (or a GPU resource) on a local run without CUDA: one line, before any job
    (called from `onstart`, when the executor is known: a cluster controller plans on a login
    node without GPUs and its jobs run on GPU nodes, so only local runs are checked)."""
    wants = config["device"] == "cuda" or any(int(r.get("gpu", 0)) > 0 for r in config["resources"].values())
    if not wants or not workflow.local_exec or workflow.remote_exec:
        return
    import torch

    if not torch.cuda.is_available():
        key = "device" if config["device"] == "cuda" else "resources.*.gpu"
        sys.stderr.write(
            f"reschrom: config key '{key}': asks for a GPU, but CUDA is not available on this machine; "
            "use device: auto or cpu and gpu: 0, or run on GPU nodes (--profile profiles/slurm)\n"
        )
        sys.exit(1)


onstart:
    _check_cuda()


def _check_results_writable():
    """An unwritable results/ (or working directory): one line, before any job."""
    res = Path("results")
    where = res if res.exists() else Path(".")
    if not os.access(where, os.W_OK | os.X_OK):
        sys.stderr.write(
            f"reschrom: {where.resolve()} is not writable; fix its permissions (chmod u+w) "
            "or run from a writable copy of the workflow\n"
        )
        sys.exit(1)


_check_results_writable()

# the design section's checks across keys (shares, levels, bases, model names)
from reschrom.design.settings import check_design_config
from reschrom.design.warp import DesignError

try:
    check_design_config(config)
except DesignError as err:
    sys.stderr.write(f"reschrom: {err}\n")
    sys.exit(1)


# ---- shared by several rule files ----------------------------------------------


def get_model_load_spec(name):
    """What loading registry model `name` needs (its kind, path/factory/…): a rule's params."""
    return registry.load_spec(config, name)


def get_model_input(name):
    """The folder of a trained model or a local pipeline as rule input (else nothing)."""
    return registry.model_inputs(config, name)


def get_stage_settings(stage, name, drop=()):
    """Stage settings of model `name`: the stage's, with overrides.<name> applied."""
    s = registry.stage_settings(config, stage, name)
    return {k: v for k, v in s.items() if k not in drop}


def get_stage_models(stage):
    return registry.stage_models(config, stage)


def get_model_pattern(names):
    """Wildcard constraint: exactly these model names."""
    return "|".join(_re.escape(n) for n in names) if names else "(?!)"


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


# ---- final targets (in `rule all`), each stage's from rules/helpers/<stage>.smk ----------


def get_final_outputs():
    """The final targets of every stage: each rule file's get_<stage>_outputs() (defined in
    rules/helpers/<stage>.smk; called in `rule all`, after every rule file is included)."""
    return (
        get_theory_outputs()
        + get_data_outputs()
        + get_training_outputs()
        + get_chromatography_outputs()
        + get_compose_outputs()
        + get_spectra_outputs()
        + get_upscale_outputs()
        + get_design_outputs()
        + get_guidance_outputs()
    )
