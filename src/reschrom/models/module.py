"""Any diffusion model as one object: a denoiser ε(x_t, ᾱ, cond) in the VP convention.

Every stage (the CFG probe, prompt composing, x̂0 spectra) that runs a model that is *not* a
diffusers pipeline sees only this contract (docs/DESIGN.md, "Models have one home"):

* ``resolution`` (int), ``channels`` (int): the image the model generates;
* ``schedule``: a mapping in the config's schedule syntax (``{type: edm, sigma_min: 0.002, …}``,
  ``{type: flow_matching, shift: 3}``, ``{type: ddpm, beta_schedule: linear}``, …);
* ``encode(prompts: list[str]) -> cond`` and ``null_condition(batch: int) -> cond``;
* ``eps(x_t, alpha_bar, cond) -> Tensor``: the noise prediction in the variance-preserving
  convention of eq. 1, x_t = √ᾱ·x0 + √(1−ᾱ)·ε, with ``alpha_bar`` a tensor of shape (B,).

Every parameterisation reduces to it. The converters below turn a network of another
parameterisation into that ``eps`` in one line; each is exact (tests check them against the
closed-form posterior of a Gaussian model). With σ² = (1−ᾱ)/ᾱ (the variance-exploding noise
level of the same SNR) and x = x_t/√ᾱ = x0 + σ·ε:

* :func:`eps_from_x0_predictor` — x0 / EDM-preconditioned denoiser D(x; σ) ≈ E[x0 | x]:
  ε = (x − D(x; σ)) / σ  (eq. 7 solved for ε);
* :func:`eps_from_v_predictor` — v = √ᾱ·ε − √(1−ᾱ)·x0:  ε = √ᾱ·v + √(1−ᾱ)·x_t;
* :func:`eps_from_flow_velocity` — rectified flow x^flow = (1−s)x0 + s·ε with velocity
  u = ε − x0:  ᾱ = (1−s)²/((1−s)² + s²), x^flow = x_t·(1−s)/√ᾱ, ε = x^flow + (1−s)·u;
* :func:`eps_from_sigma_eps` — a VE / σ-parameterised ε predictor on x = x0 + σ·ε:
  ε = ε_VE(x_t/√ᾱ; σ).

All conversions are elementwise in per-sample scalars: none adds a network evaluation.

A user's model lives in the config as ``{kind: module, path: <folder>, factory: "module:fn"}``
(optional ``dtype``). :func:`check_module_spec` checks such an entry statically (no torch, no
import of the user's code: usable while Snakemake plans the DAG); :func:`load_module_model`
imports it and calls ``fn(device=…, dtype=…)`` (and ``path=<folder>`` if ``fn`` has a ``path``
parameter) with ``path`` as the working directory, and validates the returned object into a
:class:`ModuleModel`, which every stage uses. :meth:`ModuleModel.from_object` wraps an object
already in memory (the project's toy and oracle models) with the same validation. Every
violation of the contract is a one-line :class:`ModelContractError`.

The project's own sampler for such models is deterministic DDIM (eq. 4, written through the
posterior mean x̂0 of eq. 7) with classifier-free guidance (eq. 5) or its composite form
(eq. 6): :func:`sample_cfg`, on the time grid of :func:`ddim_time_grid`.

Only the functions that touch tensors import torch (lazily), so that importing this module and
calling :func:`check_module_spec` does not load torch.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.machinery
import inspect
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from reschrom.schedules import Schedule

EpsFn = Callable[["torch.Tensor", "torch.Tensor", Any], "torch.Tensor"]
"""eps(x_t, alpha_bar (B,), cond) -> ε̂ in the VP convention of eq. 1."""


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars (B,) (or a scalar) as (B, 1, …, 1) in ``like``'s dtype and device."""
    import torch

    v = torch.as_tensor(v, device=like.device)
    v = v.to(torch.promote_types(v.dtype, like.dtype) if v.is_floating_point() else like.dtype)
    return v.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def ve_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    """σ = √((1−ᾱ)/ᾱ): the VE noise level of the same SNR (SNR = 1/σ²)."""
    import torch

    a = torch.as_tensor(alpha_bar)
    return ((1.0 - a) / a).sqrt()


def alpha_bar_from_ve_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """ᾱ = 1/(1 + σ²): the VP signal level of a VE noise level σ."""
    import torch

    s = torch.as_tensor(sigma)
    return 1.0 / (1.0 + s * s)


def flow_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    """s = √(1−ᾱ)/(√ᾱ + √(1−ᾱ)): the rectified-flow time of a VP signal level (SNR = ((1−s)/s)²)."""
    import torch

    a = torch.as_tensor(alpha_bar)
    sa, sn = a.sqrt(), (1.0 - a).sqrt()
    return sn / (sa + sn)


def alpha_bar_from_flow_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """ᾱ = (1−s)²/((1−s)² + s²): the VP signal level of a rectified-flow time s."""
    import torch

    s = torch.as_tensor(sigma)
    return (1.0 - s) ** 2 / ((1.0 - s) ** 2 + s**2)


def eps_from_x0_predictor(x0_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> EpsFn:
    """An x0 (EDM-preconditioned) denoiser ``x0_fn(x, sigma, cond)`` on x = x0 + σ·n as ``eps``.

    ``sigma`` is passed as a (B,) tensor. ε = (x − D(x; σ))/σ with x = x_t/√ᾱ, σ = √((1−ᾱ)/ᾱ)
    (eq. 7: x̂0 = (x_t − √(1−ᾱ) ε)/√ᾱ, solved for ε).
    """
    import torch

    def eps(x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        a = _col(alpha_bar, x_t)
        sigma = ve_sigma(torch.as_tensor(alpha_bar, device=x_t.device))
        s = _col(sigma, x_t)
        x = x_t / a.sqrt()
        return (x - x0_fn(x, sigma, cond)) / s

    return eps


def eps_from_v_predictor(v_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> EpsFn:
    """A v predictor ``v_fn(x_t, alpha_bar, cond)`` (v = √ᾱ·ε − √(1−ᾱ)·x0) as ``eps``:
    ε = √ᾱ·v + √(1−ᾱ)·x_t."""

    def eps(x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        a = _col(alpha_bar, x_t)
        return a.sqrt() * v_fn(x_t, alpha_bar, cond) + (1.0 - a).sqrt() * x_t

    return eps


def eps_from_flow_velocity(u_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> EpsFn:
    """A rectified-flow velocity ``u_fn(x_flow, sigma, cond)`` (u = ε − x0 on
    x_flow = (1−s)·x0 + s·ε, ``sigma`` = s as a (B,) tensor) as ``eps``.

    s = √(1−ᾱ)/(√ᾱ + √(1−ᾱ)), x_flow = x_t·(1−s)/√ᾱ, ε = x_flow + (1−s)·u.
    """
    import torch

    def eps(x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        ab = torch.as_tensor(alpha_bar, device=x_t.device)
        s = flow_sigma(ab)
        a, sc = _col(ab, x_t), _col(s, x_t)
        x_flow = x_t * (1.0 - sc) / a.sqrt()
        return x_flow + (1.0 - sc) * u_fn(x_flow, s, cond)

    return eps


def eps_from_sigma_eps(e_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]) -> EpsFn:
    """A VE / σ-parameterised ε predictor ``e_fn(x, sigma, cond)`` on x = x0 + σ·ε as ``eps``:
    the same ε at x = x_t/√ᾱ, σ = √((1−ᾱ)/ᾱ)."""
    import torch

    def eps(x_t: torch.Tensor, alpha_bar: torch.Tensor, cond: Any) -> torch.Tensor:
        a = _col(alpha_bar, x_t)
        return e_fn(x_t / a.sqrt(), ve_sigma(torch.as_tensor(alpha_bar, device=x_t.device)), cond)

    return eps


# --------------------------------------------------------------------------------------
# the contract: static check, loading, validation
# --------------------------------------------------------------------------------------


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
    ``schedule_spec`` (the mapping), ``schedule`` (a :class:`reschrom.schedules.Schedule`),
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

        from reschrom.schedules import build_schedule

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


# --------------------------------------------------------------------------------------
# DDIM with (composite) classifier-free guidance
# --------------------------------------------------------------------------------------


def ddim_time_grid(schedule: Schedule, num_inference_steps: int, alpha_bar_min: float = 1e-4) -> np.ndarray:
    """The descending ``t_frac`` grid of :func:`sample_cfg`: N points uniform in the schedule's
    own time, t_start·(N, N−1, …, 1)/N.

    Uniform in the schedule's ``t_frac`` means each schedule keeps its own spacing: EDM gets the
    Karras ρ-spacing of σ, flow matching its shifted σ, DDPM evenly spaced steps. t_start = 1
    unless ᾱ(1) < ``alpha_bar_min`` (a pure-noise end, e.g. flow matching's σ = 1 or a
    zero-terminal-SNR cosine, where ᾱ = 0 and x̂0 of eq. 7 is undefined); then t_start is the
    time where ᾱ = ``alpha_bar_min``. After the last point (t_start/N) the sampler steps to
    ᾱ = 1, i.e. returns x̂0.
    """
    n = int(num_inference_steps)
    if n < 1:
        raise ValueError(f"num_inference_steps must be ≥ 1, got {num_inference_steps}")
    t_start = 1.0
    if float(schedule.alpha_bar(1.0)) < alpha_bar_min:
        t_start = float(schedule.t_frac_from_alpha_bar(alpha_bar_min))
    return t_start * np.arange(n, 0, -1, dtype=np.float64) / n


def sample_time(schedule: Schedule, t_frac: float) -> float:
    """The schedule's native time at ``t_frac`` (DDPM step, σ of flow matching/EDM), for dumps."""
    return float(schedule.native_t(t_frac))


def initial_noise(
    model: ModuleModel, batch: int, seed: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """x_T ~ N(0, I) of shape (batch, channels, resolution, resolution) in ``model.dtype``,
    drawn on the CPU from ``torch.Generator().manual_seed(seed)`` and then moved to ``device``
    (default ``model.device``): the same seed gives the same noise on every device."""
    import torch

    device = model.device if device is None else device

    g = torch.Generator("cpu").manual_seed(int(seed))
    shape = (int(batch), model.channels, model.resolution, model.resolution)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device=device, dtype=model.dtype)


def _expand(cond: Any, batch: int) -> Any:
    """A tensor condition of leading size 1 (or 0-dim) broadcast to ``batch`` rows."""
    import torch

    if isinstance(cond, torch.Tensor):
        if cond.ndim == 0:
            return cond.reshape(1).expand(batch)
        if cond.shape[0] == 1 and batch > 1:
            return cond.expand(batch, *cond.shape[1:])
        return cond
    if isinstance(cond, Mapping):
        return {k: _expand(v, batch) for k, v in cond.items()}
    return cond


def _concat(conds: list[Any]) -> Any | None:
    """The conditions of one batched evaluation concatenated on dim 0, or None when they
    cannot be (not all tensors, or mappings of tensors with the same keys, of matching shape)."""
    import torch

    def compatible(ts: list[Any]) -> bool:
        return all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in ts) and all(
            t.shape[1:] == ts[0].shape[1:] and t.dtype == ts[0].dtype and t.device == ts[0].device for t in ts
        )

    if compatible(conds):
        return torch.cat(conds, dim=0)
    if all(isinstance(c, Mapping) for c in conds):
        keys = list(conds[0].keys())
        if all(list(c.keys()) == keys for c in conds) and all(
            compatible([c[k] for c in conds]) for k in keys
        ):
            return {k: torch.cat([c[k] for c in conds], dim=0) for k in keys}
    return None


def sample_cfg(
    model: ModuleModel,
    conds: list[Any],
    uncond: Any,
    *,
    guidance_scale: float,
    num_inference_steps: int,
    x_T: torch.Tensor,
    weights: list[Callable[[float], float]] | None = None,
    prune_below: float = 0.0,
    on_step: Callable[..., Any] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Deterministic DDIM (eq. 4) with classifier-free guidance: plain (eq. 5) or composite (eq. 6).

    At each t of :func:`ddim_time_grid`, with ε_u = ε(x_t, t; ∅) and ε_i = ε(x_t, t; c_i):
    ε_c = ε_u + Σ_i w_i(t)[ε_i − ε_u] (the combined conditional prediction) and
    ε̃ = ε_u + s·(ε_c − ε_u) = ε_u + s·Σ_i w_i(t)[ε_i − ε_u] (eq. 6; with one condition of
    weight 1 it is eq. 5). The update is eq. 4 through the posterior mean of eq. 7:
    x̂0 = (x_t − √(1−ᾱ_t)·ε̃)/√ᾱ_t, x_{t−1} = √ᾱ_{t−1}·x̂0 + √(1−ᾱ_{t−1})·ε̃; after the last
    grid point ᾱ_{t−1} = 1 and the sample is x̂0.

    ``conds``: one condition per prompt (from ``model.encode``, B rows or 1 row broadcast);
    ``uncond``: ``model.null_condition(B)``. ``weights``: one ``w_i(t_frac)`` per condition
    (None: weight 1 for each). A condition with |w_i(t)| ≤ ``prune_below`` is not evaluated at
    that step (a negative ``prune_below`` evaluates all). Each step costs exactly
    (1 + #active)·B denoiser rows: one batched ``eps`` call with x repeated when the conditions
    concatenate on dim 0 (tensors, or mappings of tensors), else one call per condition.

    ``on_step(step, t_frac, alpha_bar, x_t, eps_uncond, eps_cond, eps_guided)`` is called once
    per step with tensors left on the device (the CFG term of eq. 19 is g = eps_cond − eps_uncond).
    ``x_T``: (B, C, H, W) in ``model.dtype`` on ``model.device`` (see :func:`initial_noise`).
    Runs under ``torch.inference_mode``; returns x0 (B, C, H, W).
    """
    import torch
    from tqdm.auto import tqdm

    conds = list(conds)
    if not conds:
        raise ValueError("sample_cfg needs at least one condition")
    if weights is None:
        weights = [lambda _t: 1.0] * len(conds)
    if len(weights) != len(conds):
        raise ValueError(f"{len(weights)} weights for {len(conds)} conditions")
    grid = ddim_time_grid(model.schedule, num_inference_steps)
    abars = np.asarray(model.schedule.alpha_bar(grid), dtype=np.float64)
    abars_prev = np.append(abars[1:], 1.0)
    s = float(guidance_scale)
    batch = x_T.shape[0]
    ab_dtype = x_T.dtype if x_T.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.inference_mode():
        x = x_T
        uncond_b = _expand(uncond, batch)
        conds_b = [_expand(c, batch) for c in conds]
        for step in tqdm(range(len(grid)), desc=f"sampling {model.name}", disable=not progress, leave=False):
            t = float(grid[step])
            a, a_prev = float(abars[step]), float(abars_prev[step])
            ws = [float(w(t)) for w in weights]
            active = [i for i, w in enumerate(ws) if abs(w) > prune_below]
            group = [uncond_b, *(conds_b[i] for i in active)]
            cat = _concat(group) if len(group) > 1 else uncond_b
            if cat is not None:
                k = len(group)
                x_in = x if k == 1 else torch.cat([x] * k, dim=0)
                ab = torch.full((k * batch,), a, dtype=ab_dtype, device=x.device)
                outs = list(model.eps(x_in, ab, cat).split(batch, dim=0))
            else:
                ab = torch.full((batch,), a, dtype=ab_dtype, device=x.device)
                outs = [model.eps(x, ab, c) for c in group]
            e_u = outs[0]
            e_c = e_u
            for j, i in enumerate(active):
                e_c = e_c + ws[i] * (outs[1 + j] - e_u)
            e_g = e_u + s * (e_c - e_u)
            if on_step is not None:
                on_step(step, t, a, x, e_u, e_c, e_g)
            x0 = (x - math.sqrt(1.0 - a) * e_g) / math.sqrt(a)
            x = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev) * e_g if a_prev < 1.0 else x0
    return x
