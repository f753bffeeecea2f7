"""The model registry: one home per model, stages name models, old layouts rejected in one line."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from reschrom.config import ConfigError, validate_config
from reschrom.models.registry import load_spec, model_inputs, stage_models, stage_settings, trained_names

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "config.schema.yaml"
USER_MODELS = Path(__file__).resolve().parents[1] / "helpers" / "user_models"


def _cfg(name: str = "configs/smoke.yaml") -> dict:
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    if name != "config.yaml":
        over = yaml.safe_load((ROOT / name).read_text())
        for k, v in over.items():  # Snakemake merges the top-level sections of --configfile
            base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def _error(cfg: dict) -> str:
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, SCHEMA)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_issue_contract_validates_and_resolves():
    cfg = _cfg()
    cfg["models"]["mine"] = {"kind": "module", "path": str(USER_MODELS), "factory": "edm_classes:load"}
    cfg["chromatography"]["measure"] = ["oracle", "toy", "mine"]
    cfg["chromatography"]["overrides"]["mine"] = {
        "prompts": ["digit 3", "digit 5"], "num_inference_steps": 30, "num_samples": 2, "guidance_scale": 3.0,
    }
    validate_config(cfg, SCHEMA)
    assert stage_models(cfg, "chromatography") == ["oracle", "toy", "mine"]
    mine = stage_settings(cfg, "chromatography", "mine")
    assert mine["prompts"] == ["digit 3", "digit 5"] and mine["num_samples"] == 2 and mine["guidance_scale"] == 3.0
    assert mine["seeds"] == cfg["chromatography"]["seeds"]  # the stage's own value where no override
    spec = load_spec(cfg, "mine")
    assert spec == {"name": "mine", "kind": "module", "path": str(USER_MODELS), "factory": "edm_classes:load"}
    assert model_inputs(cfg, "mine") == []  # a module is not a file Snakemake tracks
    toy = load_spec(cfg, "toy")
    assert toy["path"] == "results/models/shapes/toy" and toy["kind"] == "trained" and toy["objective"] == "epsilon"
    assert model_inputs(cfg, "toy") == ["results/models/shapes/toy"]
    cfg2 = copy.deepcopy(cfg)
    cfg2["data"]["name"] = "other"  # a trained model follows the dataset: no path to rewrite
    assert load_spec(cfg2, "toy")["path"] == "results/models/other/toy"


def test_schema_holds_the_defaults():
    cfg = _cfg()
    for key in ("guidance_scale", "num_samples", "num_inference_steps", "seeds"):
        del cfg["chromatography"][key]
    del cfg["compose"]["guidance_scale"]
    validate_config(cfg, SCHEMA)
    schema = yaml.safe_load(SCHEMA.read_text())
    chrom = schema["properties"]["chromatography"]["properties"]
    assert cfg["chromatography"]["guidance_scale"] == chrom["guidance_scale"]["default"] == 5.0
    assert cfg["chromatography"]["num_samples"] == chrom["num_samples"]["default"] == 4
    assert cfg["compose"]["guidance_scale"] == schema["properties"]["compose"]["properties"]["guidance_scale"]["default"]


@pytest.mark.parametrize(
    "mutate, key, hint",
    [
        (lambda c: c["chromatography"].update(models={"toy": {"kind": "pipeline"}}), "chromatography.models", "overrides"),
        (lambda c: c["compose"].update(models={}), "compose.models", "compose.run"),
        (lambda c: c["spectra"].update(models={}), "spectra.models", "spectra.run"),
        (lambda c: c["models"].update(t2i={"level": 1, "block_out_channels": [8]}), "models.t2i", "kind: trained, task: t2i"),
        (lambda c: c["models"].update(lowres={"block_out_channels": [8]}), "models.lowres", "task: lowres"),
        (
            lambda c: c["models"].update(old={"kind": "pipeline", "path": "results/models/shapes/t2i"}),
            "models.old.path",
            "registry name",
        ),
    ],
)
def test_old_layout_is_rejected_with_how_to_rewrite(mutate, key, hint):
    cfg = _cfg()
    mutate(cfg)
    msg = _error(cfg)
    assert key in msg and hint in msg, msg


@pytest.mark.parametrize("stage, key", [("chromatography", "measure"), ("compose", "run"), ("spectra", "run")])
def test_stage_naming_an_unknown_model_lists_the_names(stage, key):
    cfg = _cfg()
    cfg[stage][key] = ["oracle", "nope"]
    msg = _error(cfg)
    assert f"{stage}.{key}" in msg and "'nope'" in msg and "defined: oracle, lowres" in msg, msg
    cfg = _cfg()
    cfg[stage]["overrides"] = {"ghost": {}}
    assert "ghost" in _error(cfg)


def test_stage_rejects_a_model_without_guidance():
    cfg = _cfg()
    cfg["chromatography"]["measure"] = ["lowres"]
    msg = _error(cfg)
    assert "lowres" in msg and "classifier-free guidance" in msg


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"path": "/nonexistent/folder", "factory": "edm_classes:load"}, ["mine", "/nonexistent/folder"]),
        ({"path": str(USER_MODELS), "factory": "no_such_module:load"}, ["mine", "no_such_module"]),
        ({"path": str(USER_MODELS), "factory": "edm_classes:no_such_fn"}, ["mine", "no_such_fn"]),
    ],
)
def test_module_factory_is_checked_at_dag_time(entry, words):
    cfg = _cfg()
    cfg["models"]["mine"] = {"kind": "module", **entry}
    cfg["chromatography"]["measure"] = ["mine"]
    msg = _error(cfg)
    for w in words:
        assert w in msg, msg


def test_factory_syntax_is_validated():
    cfg = _cfg()
    cfg["models"]["mine"] = {"kind": "module", "path": str(USER_MODELS), "factory": "edm_classes.load"}
    assert "models.mine.factory" in _error(cfg)


def test_only_used_trained_models_are_listed_per_task():
    cfg = _cfg("config.yaml")
    validate_config(cfg, SCHEMA)
    assert trained_names(cfg, "t2i") == ["toy", "toy_flow"]
    assert trained_names(cfg, "level") == ["level_0", "level_1"]
    assert load_spec(cfg, "toy_flow")["objective"] == "flow_matching"


def test_paper_config_validates():
    cfg = _cfg("configs/paper.yaml")
    validate_config(cfg, SCHEMA)
    assert stage_models(cfg, "chromatography") == ["if_xl", "oracle"]
    assert stage_settings(cfg, "compose", "sd15")["sampler"] == "ddim"
    assert load_spec(cfg, "if_xl") == {
        "name": "if_xl", "kind": "pipeline", "path": "DeepFloyd/IF-I-XL-v1.0", "dtype": "float16",
    }


def test_non_power_of_two_resolution_is_accepted_and_odd_rejected():
    cfg = _cfg()
    cfg["resolution"] = 28
    validate_config(cfg, SCHEMA)
    cfg = _cfg()
    cfg["resolution"] = 27
    assert "resolution" in _error(cfg)


@pytest.mark.parametrize(
    "model, change, key",
    [
        ("lowres", {"objective": "v_prediction"}, "models.lowres.objective"),
        ("lowres", {"addition_embed_type": "text"}, "models.lowres.addition_embed_type"),
        ("toy", {"shift": 3.0}, "models.toy.shift"),
        ("toy", {"objective": "v_prediction", "shift": 3.0}, "models.toy.shift"),
        ("toy", {"objective": "x0"}, "models.toy.objective"),
        ("toy", {"addition_embed_type": "image"}, "models.toy.addition_embed_type"),
        ("lowres", {"precondition": "flow_velocity"}, "models.lowres.precondition"),
        ("toy", {"objective": "v_prediction", "precondition": "flow_velocity"}, "models.toy.precondition"),
        ("toy", {"precondition": "edm"}, "models.toy.precondition"),
        ("lowres", {"clip_sample": False}, "models.lowres.clip_sample"),
        ("toy_flow", {"clip_sample": False}, "models.toy_flow.clip_sample"),
        ("toy", {"clip_sample": 3}, "models.toy.clip_sample"),
    ],
)
def test_t2i_only_keys_are_rejected_elsewhere(model, change, key):
    cfg = _cfg()
    cfg["models"][model].update(change)
    assert key in _error(cfg)


def test_v_prediction_t2i_validates():
    cfg = _cfg()
    cfg["models"]["toy"].pop("precondition", None)  # a preconditioned model is an ε model
    cfg["models"]["toy"].update(objective="v_prediction", addition_embed_type="text")
    validate_config(cfg, SCHEMA)
    assert load_spec(cfg, "toy")["objective"] == "v_prediction"
