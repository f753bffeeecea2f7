"""A user's model (``kind: module``) checked, loaded and validated against the ε contract.

A user's model lives in the config as ``{kind: module, path: <folder>, factory: "module:fn"}``
(optional ``dtype``). :func:`check_module_spec` checks such an entry statically (no torch, no
import of the user's code: usable while Snakemake plans the DAG); :func:`load_module_model`
imports it and calls ``fn(device=…, dtype=…)`` (and ``path=<folder>`` if ``fn`` has a ``path``
parameter) with ``path`` as the working directory, and validates the returned object into a
:class:`ModuleModel`, which every stage uses. :meth:`ModuleModel.from_object` wraps an object
already in memory (the project's toy and oracle models) with the same validation. Every
violation of the contract is a one-line :class:`ModelContractError`.

Only the functions that touch tensors import torch (lazily), so that importing this module and
calling :func:`check_module_spec` does not load torch.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.machinery
import inspect
import numbers
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from reschrom.theory.schedules import Schedule


class ModelContractError(ValueError):
    """A model breaks the denoiser contract. The message is one line:
    ``model 'NAME' (factory 'mod:fn'): <what is wrong>``."""

    def __init__(self, name: str, factory: str, problem: str) -> None:
        self.model = name
        self.factory = factory
        self.problem = " ".join(str(problem).split())
        super().__init__(f"model {name!r} (factory {factory!r}): {self.problem}")


_FACTORY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_DTYPES = ("float32", "float64", "float16", "bfloat16", "float", "double", "half")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _module_file(name: str, factory: str, path: Path, modname: str) -> Path | None:
    """The source file of ``modname`` as found under ``path`` alone (no import).

    None for a module that exists but has no Python source (an extension or a namespace
    package), which cannot be checked statically."""
    parts = modname.split(".")
    search: list[str] | None = [str(path)]
    spec = None
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        if search is None:
            raise ModelContractError(
                name, factory, f"module {'.'.join(parts[:i])!r} under {path} is not a package"
            )
        spec = importlib.machinery.PathFinder.find_spec(full, search)
        if spec is None:
            raise ModelContractError(name, factory, f"module {full!r} not found under {path}")
        search = list(spec.submodule_search_locations) if spec.submodule_search_locations else None
    assert spec is not None
    origin = spec.origin
    if origin is None or origin in ("namespace", "built-in", "frozen") or not origin.endswith(".py"):
        return None
    return Path(origin)


def _defines(tree: ast.Module, fn: str) -> bool:
    """Whether a module's top level (including its ``if``/``try`` blocks) binds ``fn``."""

    def names(target: ast.expr) -> list[str]:
        if isinstance(target, ast.Name):
            return [target.id]
        if isinstance(target, ast.Tuple | ast.List):
            return [n for elt in target.elts for n in names(elt)]
        return []

    def scan(body: Sequence[ast.stmt]) -> bool:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if node.name == fn:
                    return True
            elif isinstance(node, ast.Assign):
                if any(fn in names(t) for t in node.targets):
                    return True
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                if fn in names(node.target):
                    return True
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    if alias.name == "*" or (alias.asname or alias.name.split(".")[0]) == fn:
                        return True
            elif isinstance(node, ast.If):
                if scan(node.body) or scan(node.orelse):
                    return True
            elif isinstance(node, ast.Try):
                blocks = [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
                if any(scan(b) for b in blocks):
                    return True
            elif isinstance(node, ast.With) and scan(node.body):
                return True
        return False

    return scan(tree.body)


def check_module_spec(name: str, spec: Mapping[str, Any]) -> None:
    """Check a ``{kind: module, path: <folder>, factory: "module:function"}`` entry statically.

    Needs neither torch nor an import of the user's code (usable while Snakemake plans the
    DAG): ``path`` must be a folder, ``factory`` of the form ``module:function`` (the module may
    be dotted, ``pkg.sub:load``), the module's source found under ``path`` alone, and its top
    level must bind ``function`` (a ``def``, a class, an assignment or an import). ``dtype``, if
    given, must name a floating dtype. Raises :class:`ModelContractError` (one line) otherwise.
    """
    factory = str(spec.get("factory", "")) if isinstance(spec, Mapping) else ""
    if not isinstance(spec, Mapping):
        raise ModelContractError(name, factory, f"spec must be a mapping, got {type(spec).__name__}")
    kind = spec.get("kind", "module")
    if kind != "module":
        raise ModelContractError(name, factory, f"kind is {kind!r}, expected 'module'")
    if "path" not in spec:
        raise ModelContractError(name, factory, "spec has no 'path'")
    path = Path(str(spec["path"])).expanduser()
    if not path.is_dir():
        raise ModelContractError(name, factory, f"path {str(path)!r} is not an existing folder")
    if not _FACTORY_RE.match(factory):
        raise ModelContractError(
            name, factory, "factory must have the form 'module:function' (e.g. 'my_model:load')"
        )
    dtype = spec.get("dtype")
    if dtype is not None and str(dtype).removeprefix("torch.") not in _DTYPES:
        raise ModelContractError(name, factory, f"dtype {dtype!r} is unknown; allowed: {', '.join(_DTYPES)}")
    modname, fn = factory.split(":")
    source = _module_file(name, factory, path.resolve(), modname)
    if source is None:
        return
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except SyntaxError as e:
        raise ModelContractError(
            name, factory, f"syntax error in {source} line {e.lineno}: {e.msg}"
        ) from None
    except (OSError, ValueError) as e:
        raise ModelContractError(name, factory, f"cannot read {source}: {_first_line(e)}") from None
    if not _defines(tree, fn):
        raise ModelContractError(name, factory, f"{source} defines no top-level {fn!r}")


def _resolve_dtype(name: str, factory: str, dtype: Any) -> torch.dtype | None:
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).removeprefix("torch.")
    value = getattr(torch, key, None) if key in _DTYPES else None
    if not isinstance(value, torch.dtype):
        raise ModelContractError(name, factory, f"dtype {dtype!r} is unknown; allowed: {', '.join(_DTYPES)}")
    return value


def _is_under(module: Any, folder: Path) -> bool:
    files = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []) or [])]
    for f in files:
        if f and Path(f).resolve().is_relative_to(folder):
            return True
    return False


def _import_from(folder: Path, modname: str) -> Any:
    """Import ``modname`` from ``folder``, put once at the front of ``sys.path``.

    A same-named module already imported from elsewhere (another user model with the same
    module name) is dropped from ``sys.modules`` first, so that this folder's one is loaded."""
    entry = str(folder)
    while entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    top = modname.split(".")[0]
    cached = sys.modules.get(top)
    if cached is not None and not _is_under(cached, folder):
        for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[key]
    importlib.invalidate_caches()
    return importlib.import_module(modname)


@contextlib.contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    """Run a block with ``folder`` as the working directory (restored afterwards): a user's
    module and factory see relative file names (``"weights.safetensors"``) resolved against
    the model's own folder, wherever the job runs."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _takes_path(fn: Callable[..., Any]) -> bool:
    """Whether a factory names a ``path`` parameter (``def load(device, dtype, path)``); a bare
    ``**kwargs`` does not count, so that factories written before ``path`` existed are
    called as they always were."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("path")
    return p is not None and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def load_module_model(
    name: str,
    spec: Mapping[str, Any],
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
) -> ModuleModel:
    """Import a user's model from a ``{kind: module, path, factory}`` entry and validate it.

    Runs :func:`check_module_spec`, puts ``spec["path"]`` at the front of ``sys.path`` (once),
    imports the module and calls ``factory(device=device, dtype=dtype)``, plus
    ``path=<the model's folder>`` when the factory has a ``path`` parameter; ``dtype`` defaults
    to the entry's ``dtype`` (else None: the factory's choice). The import and the factory call
    run with the model's folder as the working directory, so relative file names in them
    (``Net.load("weights.safetensors")``) are found in ``path``, not where the job runs; the
    caller's working directory is restored afterwards. The returned object must follow the
    contract of this module's docstring (see :class:`ModuleModel`). Any failure — an import
    error, an exception in the factory, a missing or invalid attribute — is a one-line
    :class:`ModelContractError` naming the model, the factory and the problem.
    """
    import torch

    check_module_spec(name, spec)
    factory = str(spec["factory"])
    dt = _resolve_dtype(name, factory, dtype if dtype is not None else spec.get("dtype"))
    dev = torch.device(device)
    folder = Path(str(spec["path"])).expanduser().resolve()
    modname, fn_name = factory.split(":")
    try:
        with _working_directory(folder):
            module = _import_from(folder, modname)
    except Exception as e:
        raise ModelContractError(name, factory, f"cannot import {modname!r}: {_first_line(e)}") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ModelContractError(name, factory, f"module {modname!r} has no callable {fn_name!r}")
    kwargs: dict[str, Any] = {"device": dev, "dtype": dt}
    if _takes_path(fn):
        kwargs["path"] = str(folder)
    try:
        with _working_directory(folder):
            obj = fn(**kwargs)
    except Exception as e:
        raise ModelContractError(name, factory, f"factory raised {_first_line(e)}") from e
    return ModuleModel(name, obj, factory=factory, device=dev, dtype=dt)


class ModuleModel:
    """A validated denoiser: ε(x_t, ᾱ, cond) in the VP convention of eq. 1, with its image
    size, schedule and conditioning.

    Attributes: ``name``, ``factory``, ``kind`` (``"module"``), ``resolution``, ``channels``,
    ``schedule_spec`` (the mapping), ``schedule`` (a :class:`reschrom.theory.schedules.Schedule`),
    ``device``, ``dtype`` (the requested dtype, else the object's ``dtype`` attribute, else
    float32) and ``obj`` (the wrapped object). The wrapped object may be any object or mapping
    with ``resolution``, ``channels``, ``schedule``, ``encode``, ``null_condition`` and ``eps``.

    :meth:`eps` checks every output's shape and dtype against ``x_t`` and, on the first call
    only (one host sync), that it is finite.
    """

    kind = "module"

    def __init__(
        self,
        name: str,
        obj: Any,
        *,
        factory: str = "<in-memory>",
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str | None = None,
    ) -> None:
        import torch

        from reschrom.theory.schedules import build_schedule

        self.name = name
        self.factory = factory
        self.obj = obj

        def get(attr: str) -> Any:
            if isinstance(obj, Mapping):
                if attr not in obj:
                    raise self._error(f"the model object has no {attr!r}")
                return obj[attr]
            if not hasattr(obj, attr):
                raise self._error(f"the model object ({type(obj).__name__}) has no attribute {attr!r}")
            return getattr(obj, attr)

        for attr in ("resolution", "channels"):
            v = get(attr)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) <= 0:
                raise self._error(f"{attr} must be a positive int, got {v!r}")
        self.resolution = int(get("resolution"))
        self.channels = int(get("channels"))
        sched = get("schedule")
        if not isinstance(sched, Mapping) or "type" not in sched:
            raise self._error(f"schedule must be a mapping with a 'type' key, got {sched!r}")
        self.schedule_spec: dict[str, Any] = dict(sched)
        try:
            self.schedule: Schedule = build_schedule(name, self.schedule_spec)
        except Exception as e:
            raise self._error(f"schedule {self.schedule_spec} is invalid: {_first_line(e)}") from None
        for attr in ("encode", "null_condition", "eps"):
            if not callable(get(attr)):
                raise self._error(f"{attr} must be callable")
        self._encode = get("encode")
        self._null = get("null_condition")
        self._eps = get("eps")
        self.device = torch.device(device)
        dt = _resolve_dtype(name, factory, dtype)
        if dt is None:
            own = obj.get("dtype") if isinstance(obj, Mapping) else getattr(obj, "dtype", None)
            dt = own if isinstance(own, torch.dtype) else torch.float32
        self.dtype: torch.dtype = dt
        self._finite_checked = False

    @classmethod
    def from_object(
        cls,
        name: str,
        obj: Any,
        factory: str = "<in-memory>",
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str | None = None,
    ) -> ModuleModel:
        """Wrap an in-memory object (or mapping) following the contract, with the same
        validation as :func:`load_module_model`."""
        return cls(name, obj, factory=factory, device=device, dtype=dtype)

    def _error(self, problem: str) -> ModelContractError:
        return ModelContractError(self.name, self.factory, problem)

    def encode(self, prompts: list[str]) -> Any:
        """The condition of each prompt (whatever the model's ``eps`` takes as ``cond``)."""
        return self._encode(list(prompts))

    def null_condition(self, batch: int) -> Any:
        """The unconditional ("null") condition for a batch of ``batch`` samples."""
        return self._null(int(batch))

    def eps(self, x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        """ε̂(x_t, ᾱ, cond) in the VP convention of eq. 1; ``alpha_bar`` has shape (B,).

        Raises :class:`ModelContractError` if the output is not a tensor of ``x_t``'s shape and
        dtype, or (checked on the first call only) not finite."""
        import torch

        out = self._eps(x_t, alpha_bar, cond)
        if not isinstance(out, torch.Tensor):
            raise self._error(f"eps returned {type(out).__name__}, expected a torch.Tensor")
        if out.shape != x_t.shape:
            raise self._error(f"eps returned shape {tuple(out.shape)}, expected {tuple(x_t.shape)}")
        if out.dtype != x_t.dtype:
            raise self._error(f"eps returned dtype {out.dtype}, expected {x_t.dtype}")
        if not self._finite_checked:
            if not bool(torch.isfinite(out).all()):
                raise self._error("eps returned non-finite values")
            self._finite_checked = True
        return out

    def __repr__(self) -> str:
        return (
            f"ModuleModel(name={self.name!r}, factory={self.factory!r}, resolution={self.resolution}, "
            f"channels={self.channels}, schedule={self.schedule_spec}, device={self.device}, "
            f"dtype={self.dtype})"
        )


def is_denoiser(net: Any) -> bool:
    """How a loaded registry model runs: the one dispatch of every stage's entry point
    (``measure_guidance``, ``compose_sweep``, ``x0_spectra``).

    True for a :class:`ModuleModel` (``kind: module``, the trained flow-matching toy): sampled
    by the project's DDIM with CFG (eq. 4–6, :func:`reschrom.sampling.cfg.sample_cfg`),
    observed through its ``on_step`` callback. False for a diffusers pipeline (kinds
    ``pipeline``, ``oracle``, a trained ε model): run by its own loop and observed through the
    hooks of :class:`reschrom.models.adapters.PipelineAdapter`. Anything else raises one line
    naming its type.
    """
    if isinstance(net, ModuleModel):
        return True
    if callable(net) and hasattr(net, "scheduler"):
        return False
    raise TypeError(
        f"{type(net).__name__} is neither a diffusers pipeline nor a reschrom.models.module.ModuleModel: "
        "load it with reschrom.models.registry.load_model, or wrap a denoiser with ModuleModel.from_object"
    )


# --------------------------------------------------------------------------------------
# DDIM with (composite) classifier-free guidance
# --------------------------------------------------------------------------------------
