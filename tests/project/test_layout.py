"""The library's layout (docs/DESIGN.md, "Layout"): subpackages by role in layers, each importing
only its own layer and those below; no import cycle; no private name (``_name``) imported from
another module; no module over 550 lines; every subpackage says in its docstring what lives there
and what it may import.

The import graph is read with ``ast`` from ``src/reschrom`` (module-level and function-level
imports alike: a lazy import is still a dependency). Nothing is imported to build it."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "reschrom"
PKG = "reschrom"

# The layers, lowest first: a module may import its own layer and the layers below, never above.
# The key is the first name under ``reschrom`` (a subpackage or a top-level module). This is the
# one place the order is declared (docs/DESIGN.md and CONTRIBUTING.md describe it in words).
LAYERS: dict[str, int] = {
    "io": 0,  # atomic files, Parquet, images on disk
    "joblog": 0,  # a job's log
    "resources": 0,  # rule resources from benchmarks
    "lazy": 0,  # the packages' lazy re-exports (PEP 562)
    "theory": 1,  # schedules, τ/λ/r, pyramid, levels, spectra
    "data": 2,  # datasets
    "models": 3,  # registry, ε contract, adapters, loaders, builders, flow, oracle
    "sampling": 4,  # samplers, CFG loop, upscaling
    "measure": 5,  # prompts, probe, measurement, aggregation, agreement, x̂0, metrics
    "compose": 6,  # applications
    "design": 6,
    "training": 6,
    "guidance": 6,  # per-band guidance rules, their guider and experiment
    "plots": 7,  # figures and report tables
    "config": 8,  # the config check (planning time): may read every layer
    "precondition": 3,  # reschrom.precondition: models.precondition under the name older model folders use
    "": 9,  # reschrom/__init__.py: the public API
}
MAX_LINES = 550


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules(SRC)


def _rel(path: Path) -> str:
    return str(path.relative_to(SRC.parent)) if path.is_relative_to(SRC.parent) else str(path)


def _target(mod: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mod: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of the package, at any
    depth of the file. ``from reschrom.x import y`` where ``y`` is a module counts as ``reschrom.x.y``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == PKG]
        elif isinstance(node, ast.ImportFrom):
            tgt = _target(mod, node, is_pkg)
            if tgt.split(".")[0] != PKG:
                continue
            for a in node.names:
                sub = f"{tgt}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (tgt, a.name, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = defaultdict(set)
    for mod, path in MODULES.items():
        for tgt, _, _ in _imports(mod, path):
            if tgt in MODULES and tgt != mod:
                g[mod].add(tgt)
    return g


def _layer_key(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (lazy imports included): " + "; ".join(" ↔ ".join(c) for c in cycles)


def test_every_module_has_a_layer():
    unknown = sorted({_layer_key(m) for m in MODULES} - set(LAYERS))
    assert not unknown, f"modules or subpackages without a layer (add them to LAYERS in {__file__}): {unknown}"


def test_no_upward_import():
    bad = []
    for mod, path in MODULES.items():
        lo = LAYERS.get(_layer_key(mod))
        for tgt, _, line in _imports(mod, path):
            hi = LAYERS.get(_layer_key(tgt)) if tgt.split(".")[0] == PKG else None
            if lo is not None and hi is not None and hi > lo:
                bad.append(f"{_rel(path)}:{line}: {mod} (layer {lo}) imports {tgt} (layer {hi})")
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def test_no_private_name_across_modules():
    bad = []
    for mod, path in MODULES.items():
        for tgt, name, line in _imports(mod, path):
            if tgt != mod and name is not None and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{_rel(path)}:{line}: {mod} imports private {tgt}.{name}")
    assert not bad, "private names imported from another module (make them public or move them):\n" + "\n".join(bad)


def test_library_imports_names_from_their_module():
    """Inside the library a name comes from the module that defines it, not through a subpackage's
    (or ``reschrom``'s) lazy re-exports (``reschrom.compose.PromptComposer`` is for users): the graph above stays the
    real one, and a light module never pulls in a heavy one by accident."""
    pkgs = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    bad = []
    for mod, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        for tgt, name, line in _imports(mod, path):
            if tgt in pkgs:
                bad.append(f"{_rel(path)}:{line}: " + (f"from {tgt} import {name}" if name else f"import {tgt}"))
    assert not bad, "import from the defining module instead:\n" + "\n".join(bad)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_size(mod):
    n = len(MODULES[mod].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{_rel(MODULES[mod])} has {n} lines (at most {MAX_LINES}): split it by concern"


def test_subpackages_say_what_they_hold_and_may_import():
    pkgs = [p for p in sorted(SRC.rglob("__init__.py")) if p.parent != SRC]
    assert pkgs, "the library has no subpackages"
    for p in pkgs:
        doc = ast.get_docstring(ast.parse(p.read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, f"{_rel(p)}: the docstring says what lives there and 'May import: …'"


def test_the_graph_sees_lazy_imports(tmp_path):
    """The checks above fail on a cycle closed by a function-level import (the test is not blind)."""
    global MODULES
    root = tmp_path / PKG
    (root / "a").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a" / "__init__.py").write_text('"""May import: nothing."""\n')
    (root / "a" / "x.py").write_text("from reschrom.a.y import f\n")
    (root / "a" / "y.py").write_text("def f():\n    from reschrom.a import x\n    from reschrom.a.x import _g\n")
    saved = MODULES
    try:
        MODULES = _modules(root)
        assert _cycles(_graph()) == [["reschrom.a.x", "reschrom.a.y"]]
        with pytest.raises(AssertionError, match="private reschrom.a.x._g"):
            test_no_private_name_across_modules()
    finally:
        MODULES = saved


def _public_names(path: Path) -> set[str]:
    out: set[str] = set()
    for n in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(n, ast.FunctionDef | ast.ClassDef):
            out.add(n.name)
        elif isinstance(n, ast.Assign):
            out |= {x.id for t in n.targets for x in ast.walk(t) if isinstance(x, ast.Name)}
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            out.add(n.target.id)
    return {x for x in out if not x.startswith("_")}


def _literal(path: Path, name: str) -> dict[str, str]:
    for n in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(n, ast.AnnAssign | ast.Assign):
            targets = [n.target] if isinstance(n, ast.AnnAssign) else n.targets
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return ast.literal_eval(n.value)
    raise AssertionError(f"{_rel(path)} has no {name}")


@pytest.mark.parametrize("pkg", sorted(p.parent.name for p in SRC.glob("*/__init__.py")))
def test_subpackage_exports_every_public_name_of_its_modules(pkg):
    """``reschrom.<pkg>.<name>`` resolves for every public name of the package's modules, to the
    module that defines it (the lazy re-exports cannot drift from the code)."""
    exports = _literal(SRC / pkg / "__init__.py", "EXPORTS")
    defined = {}
    for f in sorted((SRC / pkg).glob("*.py")):
        if f.name != "__init__.py":
            for n in _public_names(f):
                defined.setdefault(n, f.stem)
    assert exports == defined, (
        f"reschrom/{pkg}/__init__.py EXPORTS differs from the public names of its modules: "
        f"missing {sorted(set(defined) - set(exports))}, stale {sorted(set(exports) - set(defined))}, "
        f"wrong module {sorted(n for n in set(exports) & set(defined) if exports[n] != defined[n])}"
    )
    assert not set(exports) & {f.stem for f in (SRC / pkg).glob("*.py")}, "a name equals a submodule's name"


def test_top_level_api_names_exist():
    api = _literal(SRC / "__init__.py", "API")
    bad = [f"{n} → {m}" for n, m in api.items() if n not in _public_names(SRC / (m.replace(".", "/") + ".py"))]
    assert not bad, f"reschrom.API names a module that does not define the name: {bad}"


def test_one_public_path_per_stage():
    """No public ``<name>_denoiser`` twin of a public ``<name>``: a stage has one entry point that
    takes any registry model (a diffusers pipeline or a ``kind: module`` model), and the
    module-model path is its internal strategy (``reschrom.models.module.is_denoiser``)."""
    public = {n: _rel(p) for p in MODULES.values() for n in _public_names(p)}
    twins = sorted(f"{n} ({public[n]})" for n in public if n.endswith("_denoiser") and n.removesuffix("_denoiser") in public)
    assert not twins, f"public twins of a stage's entry point: {twins}; dispatch inside the one entry point"
