"""Configuration: validation against ``schemas/config.schema.yaml`` with defaults.

Errors are one line that names the offending key and, where the schema lists them, the
allowed values, so that the workflow stops before any job without a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """An invalid configuration value; the message is one line naming the key."""


def _extend_with_default(validator_class):  # noqa: ANN001, ANN202
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001, ANN202
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


def _key(path) -> str:  # noqa: ANN001
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


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and 2 ** round(math.log2(n)) == n


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Validate ``config`` in place (filling schema defaults) and check cross-field rules.

    Raises :class:`ConfigError` with a one-line message naming the key.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _Validator(schema)
    errors = list(validator.iter_errors(config))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(format_error(best))
    _check_semantics(config)
    return config


def _check_semantics(config: Mapping[str, Any]) -> None:
    from reschrom.schedules import build_schedule

    res = config.get("resolution")
    if res is not None and not _is_power_of_two(int(res)):
        raise ConfigError(f"config key 'resolution': {res} is not a power of two (e.g. 32, 64, 128)")
    schedules = config.get("schedules", {})
    for name in config.get("theory", {}).get("schedules", []):
        if name not in schedules:
            allowed = ", ".join(sorted(schedules))
            raise ConfigError(f"config key 'theory.schedules': {name!r} is not defined under 'schedules'; defined: {allowed}")
    for name, spec in schedules.items():
        if spec.get("type") == "diffusers":
            p = Path(spec.get("path", ""))
            if not (p / "scheduler_config.json").is_file() and not p.is_file():
                raise ConfigError(f"config key 'schedules.{name}.path': no scheduler_config.json at {p}")
        try:
            build_schedule(name, spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config key 'schedules.{name}': {str(e).splitlines()[0]}") from None
