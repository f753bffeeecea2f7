"""Config fuzzing: every invalid config stops with one line that names the offending key."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reschrom.config import ConfigError, validate_config
from workflow_utils import REPO

SCHEMA = REPO / "schemas" / "config.schema.yaml"
BASES = {name: yaml.safe_load((REPO / path).read_text()) for name, path in
         [("default", "config.yaml"), ("smoke", "configs/smoke.yaml"), ("paper", "configs/paper.yaml")]}


def _leaves(node, path=()):
    """All (path, value) pairs of a nested config, dicts and lists included."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))


def _set(cfg, path, value):
    node = cfg
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


@pytest.mark.parametrize("name", sorted(BASES))
def test_shipped_configs_are_valid(name):
    validate_config(copy.deepcopy(BASES[name]), SCHEMA)


BAD_SCALARS = [{"__bad__": 1}, [[["nested"]]]]


@st.composite
def invalid_config(draw):
    base_name = draw(st.sampled_from(sorted(BASES)))
    cfg = copy.deepcopy(BASES[base_name])
    nodes = [(p, v) for p, v in _leaves(cfg) if p]
    kind = draw(st.sampled_from(["unknown_key", "wrong_type", "negative"]))
    if kind == "unknown_key":
        dicts = [(p, v) for p, v in _leaves(cfg) if isinstance(v, dict)]
        path, node = draw(st.sampled_from(dicts))
        key = draw(st.from_regex(r"zz_[a-z]{1,8}", fullmatch=True))
        node[key] = draw(st.sampled_from([1, "x", [1], {"a": 1}]))
        return cfg, [*map(str, path), key]
    if kind == "negative":
        numeric = [(p, v) for p, v in nodes if isinstance(v, (int, float)) and not isinstance(v, bool)]
        path, _ = draw(st.sampled_from(numeric))
        _set(cfg, path, -draw(st.integers(10**6, 10**9)))
        return cfg, list(map(str, path))
    path, _ = draw(st.sampled_from(nodes))
    _set(cfg, path, draw(st.sampled_from(BAD_SCALARS)))
    return cfg, list(map(str, path))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=invalid_config())
def test_invalid_config_one_line_naming_key(case):
    cfg, path = case
    try:
        validate_config(cfg, SCHEMA)
    except ConfigError as err:
        msg = str(err)
        assert "\n" not in msg
        assert msg.startswith("config key '")
        named = msg.split("'")[1]
        # the named key is the mutated key or one of its ancestors
        dotted = ".".join(path)
        assert dotted.startswith(named) or named == "<top level>" or named.startswith(dotted), (msg, dotted)
        return
    # a mutation that happens to be valid (e.g. a negative seed offset allowed) must not crash
    pytest.fail(f"invalid config accepted: {'.'.join(path)}")
