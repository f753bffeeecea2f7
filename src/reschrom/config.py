"""Configuration: validation against ``schemas/config.schema.yaml`` with defaults.

Errors are one line that names the offending key and, where the schema lists them, the
allowed values, so that the workflow stops before any job without a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """An invalid configuration value; the message is one line naming the key."""


def _extend_with_default(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(prop, _copy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _copy(v: Any) -> Any:
    import copy

    return copy.deepcopy(v)


_Validator = _extend_with_default(jsonschema.Draft202012Validator)


def _key(path) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<top level>"


def format_error(err: jsonschema.ValidationError) -> str:
    """One line: ``config key 'a.b': <what is wrong>; allowed: …``."""
    key = _key(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        where = f"'{key}.{extra[0]}'" if key != "<top level>" else f"'{extra[0]}'"
        return f"config key {where} is unknown; allowed keys here: {allowed}"
    if v == "enum":
        allowed = ", ".join(map(str, err.validator_value))
        return f"config key '{key}': {err.instance!r} is not allowed; allowed values: {allowed}"
    if v == "required":
        return f"config key '{key}': {err.message}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"config key '{key}': {err.instance!r} is out of range ({v} {err.validator_value})"
    if v == "type":
        return f"config key '{key}': {err.instance!r} has the wrong type; expected {err.validator_value}"
    return f"config key '{key}': {err.message}"


_YAML_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None), "array": list, "object": dict}


def _coerce_cli_strings(config: dict[str, Any], validator: Any, rounds: int = 50) -> list:
    """Type ``--config`` values as YAML: Snakemake passes nested values such as
    ``--config 'theory={n_t: 50}'`` as strings ('50'); where the schema wants a number, a
    boolean, a list or a mapping and the string parses as YAML into that type, use the parsed
    value. Returns the remaining validation errors."""
    for _ in range(rounds):
        errors = list(validator.iter_errors(config))
        fixed = False
        for err in errors:
            if err.validator != "type" or not isinstance(err.instance, str) or not err.absolute_path:
                continue
            wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            try:
                value = yaml.safe_load(err.instance)
            except yaml.YAMLError:
                continue
            if any(isinstance(value, _YAML_TYPES[w]) and not (w != "boolean" and isinstance(value, bool)) for w in wanted if w in _YAML_TYPES):
                parent: Any = config
                path = list(err.absolute_path)
                for k in path[:-1]:
                    parent = parent[k]
                parent[path[-1]] = value
                fixed = True
                break
        if not fixed:
            return errors
    return list(validator.iter_errors(config))


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Validate ``config`` in place (filling schema defaults) and check cross-field rules.

    Raises :class:`ConfigError` with a one-line message naming the key.
    """
    from reschrom.models.registry import old_layout_error

    old = old_layout_error(config)
    if old:
        raise ConfigError(old)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _Validator(schema)
    errors = _coerce_cli_strings(config, validator)
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(format_error(best))
    _check_semantics(config)
    return config


EMPTY_STAGES: dict[tuple[str, ...], str] = {
    ("chromatography", "measure"): "no measurement of CFG will run (no guidance dumps, measured chromatography or agreement)",
    ("compose", "run"): "no prompt composing will run",
    ("spectra", "run"): "no x̂0 spectra will be measured",
    ("design", "schedules"): "no schedule will be designed",
    ("design", "nfe", "run"): "no NFE experiment will run",
    ("guidance_design", "run"): "no guidance methods will be compared",
}
"""Stage lists that may be empty on purpose, with what an empty one leaves out of the run."""


def empty_stage_notices(config: Mapping[str, Any]) -> list[str]:
    """One line per stage list of :data:`EMPTY_STAGES` that is present and empty in a validated
    ``config``, e.g. ``reschrom: chromatography.measure is empty: no measurement of CFG will run (…)``:
    the run goes on without that stage, and says so once, at planning."""
    out = []
    for keys, what in EMPTY_STAGES.items():
        node: Any = config
        for k in keys:
            node = node.get(k) if isinstance(node, Mapping) else None
        if isinstance(node, list) and not node:
            out.append(f"reschrom: {'.'.join(keys)} is empty: {what}")
    up = config.get("upscale")
    if isinstance(up, Mapping) and up.get("source") == "trained":
        from reschrom.models.registry import trained_names

        if not trained_names(config):
            out.append("reschrom: upscale.source is trained but the registry has no trained model: no upscaling will run")
    return out


def _check_semantics(config: Mapping[str, Any]) -> None:
    from reschrom.theory.schedules import build_schedule

    res = config.get("resolution")
    k = int(config.get("kernel", 2))
    if res is not None and int(res) % k:
        raise ConfigError(
            f"config key 'resolution': {res} has a single level (not divisible by {k}); "
            f"use R = c·{k}^K with K ≥ 1 (e.g. 28 = 7·2², 32, 64)"
        )
    schedules = config.get("schedules", {})
    for name in config.get("theory", {}).get("schedules", []):
        if name not in schedules:
            allowed = ", ".join(sorted(schedules))
            raise ConfigError(f"config key 'theory.schedules': {name!r} is not defined under 'schedules'; defined: {allowed}")
    from reschrom.models.registry import RegistryError, check_registry

    try:
        check_registry(config)
    except RegistryError as e:
        raise ConfigError(str(e)) from None
    for name, spec in schedules.items():
        if spec.get("type") == "diffusers":
            p = Path(spec.get("path", ""))
            if not (p / "scheduler_config.json").is_file() and not p.is_file():
                raise ConfigError(f"config key 'schedules.{name}.path': no scheduler_config.json at {p}")
        try:
            build_schedule(name, spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config key 'schedules.{name}': {str(e).splitlines()[0]}") from None
    _check_data_and_training(config)
    _check_guidance_design(config)


def _check_guidance_design(config: Mapping[str, Any]) -> None:
    """The guidance experiment's methods, per model (scales > 0, windows inside [0, 1] and not
    empty, per-band scale lists as long as the model's band count)."""
    from reschrom.guidance.settings import GuidanceError, check_methods, model_num_levels
    from reschrom.models.registry import model_entry, stage_models, stage_settings

    sec = config.get("guidance_design") or {}
    for name in stage_models(config, "guidance_design"):
        kind = (model_entry(config, name) or {}).get("kind")
        if kind == "pipeline":  # latent pipelines: samples, data and bands live on other grids
            raise ConfigError(
                f"config key 'guidance_design.run': model '{name}' is a kind: pipeline model; the guidance "
                "experiment compares pixel-space models (trained, oracle, module) against their data — "
                "guide a pipeline directly with reschrom.guidance.GuidedPipeline")
    try:
        check_methods(sec.get("methods") or [], None, "guidance_design.methods")
        for name in stage_models(config, "guidance_design"):
            s = stage_settings(config, "guidance_design", name)
            over = "methods" in ((sec.get("overrides") or {}).get(name) or {})
            key = f"guidance_design.overrides.{name}.methods" if over else "guidance_design.methods"
            check_methods(s.get("methods") or [], model_num_levels(config, name, s), key)
    except GuidanceError as e:
        raise ConfigError(str(e)) from None


def _check_data_and_training(config: Mapping[str, Any]) -> None:
    """Cross-field rules of the data, models and training sections (issue 3)."""
    data = config.get("data")
    if data:
        kind = data.get("kind", "shapes")
        if kind == "imagefolder":
            path = data.get("path")
            if not path:
                raise ConfigError("config key 'data.path': required when data.kind is imagefolder")
            # existence is checked when the dataset is prepared (the folder may live on the
            # cluster only), with an error naming it
        if kind == "hf" and not data.get("hf", {}).get("name"):
            raise ConfigError("config key 'data.hf.name': required when data.kind is hf")
    train = config.get("training")
    if not train or not data:
        return
    name = train.get("schedule", "linear")
    schedules = config.get("schedules", {})
    if name not in schedules:
        raise ConfigError(f"config key 'training.schedule': {name!r} is not defined under 'schedules'; defined: {', '.join(sorted(schedules))}")
    if schedules[name].get("type") not in ("ddpm", "cosine", "diffusers"):
        raise ConfigError(f"config key 'training.schedule': {name!r} has type {schedules[name].get('type')!r}; training needs a DDPM schedule (type ddpm or cosine)")
    res = int(data.get("resolution", 32))
    k = int(config.get("kernel", 2))
    from reschrom.theory.resolution import num_levels

    max_levels = num_levels(res, k)
    M = int(train.get("num_levels", 2))
    if M > max_levels:
        raise ConfigError(f"config key 'training.num_levels': {M} levels need a resolution of at least {k ** (M - 1)}, data.resolution is {res}")
    from reschrom.models.registry import trained_names

    models = config.get("models", {})
    up = config.get("upscale") or {}
    if up.get("source", "trained") == "trained" and up.get("models"):
        for role, task in (("lowres", "lowres"), ("residual", "residual"), ("levels", "level")):
            n = up["models"].get(role)
            e = models.get(n)
            if e is None or e.get("kind") != "trained" or e.get("task") != task:
                defined = ", ".join(trained_names(config, task)) or "(none)"
                raise ConfigError(
                    f"config key 'upscale.models.{role}': {n!r} is not a trained {task} model of the registry; "
                    f"defined: {defined}"
                )
    for m in trained_names(config, "level"):
        if int(m.split("_")[1]) >= max_levels:
            raise ConfigError(f"config key 'training.num_levels': {M} levels need a resolution of at least {k ** (M - 1)}, data.resolution is {res}")
    for name, block in models.items():
        if block.get("kind") != "trained":
            continue
        if block.get("task") == "t2i":
            lvl = int(block.get("level", 0))
            if lvl >= max_levels - 2:
                raise ConfigError(f"config key 'models.{name}.level': {lvl} leaves images of {res // k ** lvl} px; use a level below {max_levels - 2}")
        bs = int({**train, **block.get("train", {})}.get("batch_size", 32))
        if data.get("kind", "shapes") == "shapes" and bs > int(data.get("num_train", 4000)):
            raise ConfigError(f"config key 'models.{name}': batch size {bs} exceeds data.num_train {data.get('num_train')}")


# --------------------------------------------------------------------------------------
# config files and --config items, checked the way the workflow reads them
# --------------------------------------------------------------------------------------


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) config file as a mapping; a syntax error is one line naming the file,
    line and column (``my.yaml:3:4: expected ',' or '}' …``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p}: not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {p}: cannot be read ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(f"config file {where}: YAML syntax error: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def parse_config_item(item: str) -> dict[str, Any]:
    """One ``--config KEY=VALUE`` item exactly as Snakemake reads it (``snakemake.cli.parse_config``),
    its errors as one line. A dotted key (``theory.n_t=50``) is not Snakemake syntax: the line
    shows the accepted form (``--config 'theory={n_t: 50}'``)."""
    from snakemake.cli import parse_config

    key, _, value = item.partition("=")
    if "=" in item and "." in key:
        head, _, rest = key.partition(".")
        parts = rest.split(".")
        nested = "{" + ": {".join(parts) + f": {value}" + "}" * len(parts)
        raise ConfigError(
            f"--config {item!r}: dotted keys are not accepted; nest the value instead: --config '{head}={nested}'"
        )
    try:
        return parse_config([item])
    except ValueError as err:
        raise ConfigError(f"--config {item!r}: {err}") from None


def check_files(files: list[str | Path], items: list[str], root: str | Path) -> dict[str, Any]:
    """The config the workflow would see: ``root/config.yaml``, then ``files`` in order, then
    ``--config`` ``items``, merged with Snakemake's own ``update_config`` and validated.
    Raises :class:`ConfigError` (one line)."""
    from snakemake.utils import update_config

    root = Path(root)
    config = load_config_file(root / "config.yaml")
    for f in files:
        update_config(config, load_config_file(f))
    for item in items:
        update_config(config, parse_config_item(item))
    return validate_config(config, root / "schemas" / "config.schema.yaml")


def main(argv: list[str] | None = None) -> int:
    """``python -m reschrom.config [FILE …] [--config KEY=VALUE …]``: check config files and
    overrides before a run. Snakemake reads ``--configfile`` and ``--config`` itself, before the
    workflow starts, and its messages there name no line; this names file, line and key."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m reschrom.config", description=(main.__doc__ or "").splitlines()[0])
    ap.add_argument("files", nargs="*", help="config files, merged over config.yaml in order (as --configfile)")
    ap.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, as snakemake --config")
    ap.add_argument("--root", default=".", help="the workflow folder (holds config.yaml and schemas/)")
    args = ap.parse_args(argv)
    try:
        check_files(args.files, args.config, args.root)
    except ConfigError as err:
        print(f"reschrom: {err}", file=sys.stderr)
        return 1
    print("reschrom: config ok (" + ", ".join(["config.yaml", *args.files]) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
