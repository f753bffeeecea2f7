"""Safe loading: weights only through safetensors, torch.load only with weights_only=True."""

from __future__ import annotations

import ast
from pathlib import Path

from workflow_utils import REPO

SOURCES = sorted(
    p for d in ("src", "scripts", "benchmarks") for p in (REPO / d).rglob("*.py")
)


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_sources_found():
    assert len(SOURCES) > 5


def test_torch_load_only_with_weights_only():
    bad = []
    for path in SOURCES:
        for node, owner, name in _calls(path):
            if owner == "torch" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                v = kw.get("weights_only")
                if not (isinstance(v, ast.Constant) and v.value is True):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, f"torch.load without weights_only=True: {bad}"


def test_no_pickle_loading():
    bad = []
    for path in SOURCES:
        for node, owner, name in _calls(path):
            if owner in ("pickle", "dill", "cloudpickle") and name in ("load", "loads"):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
            if owner == "np" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                v = kw.get("allow_pickle")
                if isinstance(v, ast.Constant) and v.value is True:
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, f"pickle loading: {bad}"


def test_from_pretrained_prefers_safetensors():
    """No call asks diffusers/transformers for pickled .bin weights."""
    bad = []
    for path in SOURCES:
        for node, _owner, name in _calls(path):
            if name in ("from_pretrained", "save_pretrained"):
                for k in node.keywords:
                    if k.arg in ("use_safetensors", "safe_serialization") and isinstance(k.value, ast.Constant) and k.value.value is False:
                        bad.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not bad, f"non-safetensors weights: {bad}"
