"""The denoiser contract (reschrom.models.contract): converters, static check, loading, DDIM + CFG.

Ground truth is an analytic Gaussian data model x0 ~ N(μ, s²I), whose posterior means in every
parameterisation are closed-form linear regressions.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reschrom import models, sampling
from reschrom.models.module import ModelContractError, ModuleModel
from reschrom.theory.schedules import EDMSchedule, FlowMatchingSchedule, build_schedule

USER_MODELS = Path(__file__).resolve().parents[1] / "helpers" / "user_models"


@pytest.fixture(autouse=True)
def _restore_import_state():
    """load_module_model puts folders on sys.path and imports user modules: undo it after each test."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    added = [Path(p).resolve() for p in sys.path if p and p not in path]
    sys.path[:] = path
    for key in set(sys.modules) - modules:
        f = getattr(sys.modules[key], "__file__", None)
        if f and any(Path(f).resolve().is_relative_to(a) for a in added):
            del sys.modules[key]


abars = st.floats(1e-4, 1 - 1e-4)
mus = st.floats(-3.0, 3.0)
stds = st.floats(0.05, 3.0)


# --------------------------------------------------------------------------------------
# converters against the closed-form posterior of a Gaussian
# --------------------------------------------------------------------------------------


def exact_vp_eps(x_t: torch.Tensor, a: torch.Tensor, mu: float, s: float) -> torch.Tensor:
    """E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ) for x0 ~ N(μ, s²I)."""
    a = a.reshape(-1, 1, 1, 1)
    return (1 - a).sqrt() * (x_t - a.sqrt() * mu) / (a * s**2 + 1 - a)


def _xt(a: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64) * 2
    return x, torch.full((3,), a, dtype=torch.float64)


@given(a=abars, mu=mus, s=stds)
def test_x0_predictor_converter_is_exact(a: float, mu: float, s: float) -> None:
    def denoiser(x: torch.Tensor, sigma: torch.Tensor, cond: object) -> torch.Tensor:
        # E[x0 | x = x0 + σn] in its own (VE, x0) parameterisation
        sig2 = sigma.reshape(-1, 1, 1, 1) ** 2
        return mu + s**2 / (s**2 + sig2) * (x - mu)

    x_t, ab = _xt(a)
    got = models.eps_from_x0_predictor(denoiser)(x_t, ab, None)
    torch.testing.assert_close(got, exact_vp_eps(x_t, ab, mu, s), rtol=1e-6, atol=1e-6)


@given(a=abars, mu=mus, s=stds)
def test_v_predictor_converter_is_exact(a: float, mu: float, s: float) -> None:
    def v_pred(x_t: torch.Tensor, ab: torch.Tensor, cond: object) -> torch.Tensor:
        # E[v | x_t] for v = √ᾱ ε − √(1−ᾱ) x0: E[v] + Cov(v, x_t)/Var(x_t)·(x_t − E x_t)
        al = ab.reshape(-1, 1, 1, 1)
        cov = (al * (1 - al)).sqrt() * (1 - s**2)
        var = al * s**2 + 1 - al
        return -(1 - al).sqrt() * mu + cov / var * (x_t - al.sqrt() * mu)

    x_t, ab = _xt(a, 1)
    got = models.eps_from_v_predictor(v_pred)(x_t, ab, None)
    torch.testing.assert_close(got, exact_vp_eps(x_t, ab, mu, s), rtol=1e-6, atol=1e-6)


@given(a=abars, mu=mus, s=stds)
def test_flow_velocity_converter_is_exact(a: float, mu: float, s: float) -> None:
    def u_pred(x_f: torch.Tensor, sf: torch.Tensor, cond: object) -> torch.Tensor:
        # E[u | x_f] for x_f = (1−σ)x0 + σε, u = ε − x0
        sig = sf.reshape(-1, 1, 1, 1)
        cov = sig - (1 - sig) * s**2
        var = (1 - sig) ** 2 * s**2 + sig**2
        return -mu + cov / var * (x_f - (1 - sig) * mu)

    x_t, ab = _xt(a, 2)
    got = models.eps_from_flow_velocity(u_pred)(x_t, ab, None)
    torch.testing.assert_close(got, exact_vp_eps(x_t, ab, mu, s), rtol=1e-6, atol=1e-6)


@given(a=abars, mu=mus, s=stds)
def test_sigma_eps_converter_is_exact(a: float, mu: float, s: float) -> None:
    def e_pred(x: torch.Tensor, sigma: torch.Tensor, cond: object) -> torch.Tensor:
        # E[ε | x = x0 + σε] = σ(x − μ)/(s² + σ²)
        sig = sigma.reshape(-1, 1, 1, 1)
        return sig * (x - mu) / (s**2 + sig**2)

    x_t, ab = _xt(a, 3)
    got = models.eps_from_sigma_eps(e_pred)(x_t, ab, None)
    torch.testing.assert_close(got, exact_vp_eps(x_t, ab, mu, s), rtol=1e-6, atol=1e-6)


@given(s=st.floats(1e-4, 1 - 1e-4), a=abars)
def test_flow_sigma_round_trips(s: float, a: float) -> None:
    st_ = torch.tensor(s, dtype=torch.float64)
    at = torch.tensor(a, dtype=torch.float64)
    assert float(models.flow_sigma(models.alpha_bar_from_flow_sigma(st_))) == pytest.approx(s, rel=1e-9, abs=1e-12)
    assert float(models.alpha_bar_from_flow_sigma(models.flow_sigma(at))) == pytest.approx(a, rel=1e-9, abs=1e-12)
    # same SNR as the schedule module's flow matching: ((1−σ)/σ)²
    assert float(models.alpha_bar_from_flow_sigma(st_)) == pytest.approx(
        float(FlowMatchingSchedule().alpha_bar(s)), rel=1e-9
    )


@given(a=abars, sig=st.floats(1e-3, 1e3))
def test_ve_sigma_round_trips(a: float, sig: float) -> None:
    at = torch.tensor(a, dtype=torch.float64)
    st_ = torch.tensor(sig, dtype=torch.float64)
    assert float(models.alpha_bar_from_ve_sigma(models.ve_sigma(at))) == pytest.approx(a, rel=1e-9)
    assert float(models.ve_sigma(models.alpha_bar_from_ve_sigma(st_))) == pytest.approx(sig, rel=1e-7)
    edm = EDMSchedule(sigma_min=1e-4, sigma_max=1e4)  # SNR = 1/σ²
    assert float(models.alpha_bar_from_ve_sigma(st_)) == pytest.approx(
        float(edm.alpha_bar(edm.t_frac_from_native(sig))), rel=1e-9
    )


# --------------------------------------------------------------------------------------
# check_module_spec: static, no import
# --------------------------------------------------------------------------------------


def _write(folder: Path, rel: str, text: str) -> None:
    p = folder / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))


def _assert_one_line(e: ModelContractError, name: str, factory: str, *fragments: str) -> None:
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith(f"model {name!r} (factory {factory!r}): "), msg
    for f in fragments:
        assert f in msg, msg


def test_check_module_spec_accepts_good_specs_without_importing(tmp_path: Path) -> None:
    # importing this module would raise: the static check must not import it
    _write(
        tmp_path,
        "boom_model.py",
        "raise RuntimeError('imported!')\n\ndef load(device=None, dtype=None):\n    pass\n",
    )
    _write(tmp_path, "pkg/__init__.py", "")
    _write(tmp_path, "pkg/sub.py", "import torch\nload = lambda device=None, dtype=None: None\n")
    _write(tmp_path, "reexport.py", "from somewhere_else import make as load\n")
    models.check_module_spec("m", {"kind": "module", "path": str(tmp_path), "factory": "boom_model:load"})
    models.check_module_spec(
        "m", {"kind": "module", "path": tmp_path, "factory": "pkg.sub:load", "dtype": "float64"}
    )
    models.check_module_spec("m", {"kind": "module", "path": str(tmp_path), "factory": "reexport:load"})
    models.check_module_spec("m", {"kind": "module", "path": str(USER_MODELS), "factory": "edm_classes:load"})
    assert "boom_model" not in sys.modules and "pkg" not in sys.modules


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"path": "{tmp}/nope", "factory": "good:load"}, "not an existing folder"),
        ({"path": "{tmp}", "factory": "good.load"}, "form 'module:function'"),
        ({"path": "{tmp}", "factory": "good:"}, "form 'module:function'"),
        ({"path": "{tmp}", "factory": "1bad:load"}, "form 'module:function'"),
        ({"path": "{tmp}", "factory": "missing:load"}, "module 'missing' not found"),
        ({"path": "{tmp}", "factory": "good.inner:load"}, "is not a package"),
        ({"path": "{tmp}", "factory": "good:build"}, "defines no top-level 'build'"),
        ({"path": "{tmp}", "factory": "broken:load"}, "syntax error"),
        ({"path": "{tmp}", "factory": "good:load", "dtype": "float8"}, "dtype 'float8' is unknown"),
        ({"path": "{tmp}", "factory": "good:load", "kind": "diffusers"}, "expected 'module'"),
    ],
)
def test_check_module_spec_errors_are_one_line(tmp_path: Path, spec: dict, fragment: str) -> None:
    _write(tmp_path, "good.py", "def load(device=None, dtype=None):\n    def build_inner():\n        pass\n")
    _write(tmp_path, "broken.py", "def load(:\n")
    spec = {"kind": "module", **spec, "path": spec["path"].format(tmp=tmp_path)}
    with pytest.raises(ModelContractError) as ei:
        models.check_module_spec("mine", spec)
    _assert_one_line(ei.value, "mine", spec["factory"], fragment)


def test_check_module_spec_does_not_load_torch(tmp_path: Path) -> None:
    _write(tmp_path, "m.py", "import torch\n\ndef load(device=None, dtype=None):\n    pass\n")
    code = (
        "import sys\nfrom reschrom.models.module import check_module_spec\n"
        f"check_module_spec('m', {{'kind': 'module', 'path': {str(tmp_path)!r}, 'factory': 'm:load'}})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------------------
# load_module_model: import, factory, validation
# --------------------------------------------------------------------------------------

GOOD = """
import torch

class M:
    resolution, channels = 4, 1
    schedule = {"type": "cosine"}
    def __init__(self, device, dtype):
        self.device, self.dtype = device, dtype or torch.float32
    def encode(self, prompts):
        return torch.zeros(len(prompts), dtype=torch.long)
    def null_condition(self, batch):
        return torch.ones(batch, dtype=torch.long)
    def eps(self, x, a, c):
        return EPS

def load(device=None, dtype=None):
    m = M(device, dtype)
    PATCH
    return m
"""


def _model_file(folder: Path, modname: str, eps: str = "x * 0.5", patch: str = "pass") -> dict:
    _write(folder, f"{modname}.py", GOOD.replace("EPS", eps).replace("PATCH", patch))
    return {"kind": "module", "path": str(folder), "factory": f"{modname}:load"}


def test_load_module_model_good(tmp_path: Path) -> None:
    spec = _model_file(tmp_path, "goodmodel")
    m = models.load_module_model("g", spec, dtype="float64")
    assert (m.kind, m.name, m.factory, m.resolution, m.channels) == ("module", "g", "goodmodel:load", 4, 1)
    assert m.dtype == torch.float64 and m.device == torch.device("cpu")
    assert m.schedule_spec == {"type": "cosine"} and m.schedule.alpha_bar(0.5) == pytest.approx(
        build_schedule("g", {"type": "cosine"}).alpha_bar(0.5)
    )
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(m.eps(x, torch.full((2,), 0.5), m.encode(["a", "b"])), x * 0.5)
    assert m.null_condition(3).tolist() == [1, 1, 1]


def test_same_module_name_in_two_folders_loads_each(tmp_path: Path) -> None:
    a = _model_file(tmp_path / "a", "samename", eps="x * 2")
    b = _model_file(tmp_path / "b", "samename", eps="x * 3")
    x = torch.ones(1, 1, 4, 4)
    ab = torch.full((1,), 0.5)
    assert float(models.load_module_model("a", a).eps(x, ab, None)[0, 0, 0, 0]) == 2.0
    assert float(models.load_module_model("b", b).eps(x, ab, None)[0, 0, 0, 0]) == 3.0


@pytest.mark.parametrize(
    ("modname", "patch", "fragment"),
    [
        (
            "raising_factory",
            "raise RuntimeError('no weights here\\nsecond line')",
            "factory raised RuntimeError: no weights here",
        ),
        ("no_eps", "del M.eps", "no attribute 'eps'"),
        ("bad_res", "m.resolution = 0", "resolution must be a positive int"),
        ("bool_channels", "m.channels = True", "channels must be a positive int"),
        ("bad_sched", "m.schedule = {'type': 'nonsense'}", "schedule {'type': 'nonsense'} is invalid"),
        ("not_callable", "m.encode = 3", "encode must be callable"),
    ],
)
def test_load_module_model_contract_errors(tmp_path: Path, modname: str, patch: str, fragment: str) -> None:
    spec = _model_file(tmp_path, modname, patch=patch)
    with pytest.raises(ModelContractError) as ei:
        models.load_module_model("bad", spec)
    _assert_one_line(ei.value, "bad", f"{modname}:load", fragment)


def test_load_module_model_import_error(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "imports_missing.py",
        "import no_such_package_xyz\n\ndef load(device=None, dtype=None):\n    pass\n",
    )
    spec = {"kind": "module", "path": str(tmp_path), "factory": "imports_missing:load"}
    with pytest.raises(ModelContractError) as ei:
        models.load_module_model("bad", spec)
    _assert_one_line(
        ei.value, "bad", "imports_missing:load", "cannot import 'imports_missing'", "no_such_package_xyz"
    )


@pytest.mark.parametrize(
    ("eps", "fragment"),
    [
        ("x[..., :3, :3]", "eps returned shape (2, 1, 3, 3), expected (2, 1, 4, 4)"),
        ("x / 0.0", "eps returned non-finite values"),
        ("x.double()", "eps returned dtype torch.float64, expected torch.float32"),
        ("x.numpy()", "eps returned ndarray, expected a torch.Tensor"),
    ],
)
def test_eps_output_is_checked(tmp_path: Path, eps: str, fragment: str) -> None:
    name = "eps_" + str(abs(hash(eps)))
    m = models.load_module_model("bad", _model_file(tmp_path, name, eps=eps))
    with pytest.raises(ModelContractError) as ei:
        m.eps(torch.ones(2, 1, 4, 4), torch.full((2,), 0.5), None)
    _assert_one_line(ei.value, "bad", f"{name}:load", fragment)


def test_finiteness_checked_on_first_call_only() -> None:
    outs = [torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), float("nan"))]
    obj = _gauss_obj(res=2)
    obj.eps = lambda x, a, c: outs.pop(0)
    m = ModuleModel.from_object("once", obj)
    m.eps(torch.zeros(1, 1, 2, 2), torch.ones(1) * 0.5, None)
    assert torch.isnan(m.eps(torch.zeros(1, 1, 2, 2), torch.ones(1) * 0.5, None)).all()  # no second sync


# --------------------------------------------------------------------------------------
# DDIM + (composite) CFG on an analytic class-conditional Gaussian
# --------------------------------------------------------------------------------------

MEANS = torch.tensor([-0.6, 0.4, 1.2, 0.0], dtype=torch.float64)  # classes 0, 1, 2 and null (3)
STDS = torch.tensor([0.3, 0.2, 0.5, 1.0], dtype=torch.float64)


def _gauss_obj(res: int = 8, calls: list | None = None) -> SimpleNamespace:
    """x0 | class k ~ N(MEANS[k], STDS[k]² I); exact VP ε; records rows per eps call."""

    def eps(x: torch.Tensor, a: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(x.shape[0])
        mu = MEANS.to(x)[labels].reshape(-1, 1, 1, 1)
        s = STDS.to(x)[labels].reshape(-1, 1, 1, 1)
        return _eps_k(x, a.to(x), mu, s)

    return SimpleNamespace(
        resolution=res,
        channels=1,
        schedule={"type": "cosine"},
        dtype=torch.float64,
        encode=lambda prompts: torch.tensor([int(p) for p in prompts]),
        null_condition=lambda b: torch.full((b,), 3),
        eps=eps,
    )


def _eps_k(x: torch.Tensor, a: torch.Tensor, mu: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    a = a.reshape(-1, 1, 1, 1)
    return (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * s**2 + 1 - a)


def _gauss_model(calls: list | None = None, res: int = 8) -> ModuleModel:
    return ModuleModel.from_object("gauss", _gauss_obj(res, calls))


def test_time_grid() -> None:
    edm = EDMSchedule()
    g = sampling.ddim_time_grid(edm, 10)
    np.testing.assert_allclose(g, np.arange(10, 0, -1) / 10)
    fm = FlowMatchingSchedule(shift=3.0)
    g = sampling.ddim_time_grid(fm, 7, alpha_bar_min=1e-4)
    assert len(g) == 7 and np.all(np.diff(g) < 0)
    assert float(fm.alpha_bar(g[0])) == pytest.approx(1e-4, rel=1e-6)
    assert g[-1] == pytest.approx(g[0] / 7)
    assert sampling.sample_time(fm, 0.5) == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))
    with pytest.raises(ValueError):
        sampling.ddim_time_grid(edm, 0)


def test_rows_per_step() -> None:
    calls: list[int] = []
    m = _gauss_model(calls)
    B, N = 3, 6
    x = sampling.model_noise(m, B, 0, "cpu")
    c1, c2, u = m.encode(["0"] * B), m.encode(["1"] * B), m.null_condition(B)
    switch = [lambda t: 1.0 if t > 0.5 else 0.0, lambda t: 0.0 if t > 0.5 else 1.0]

    def run(conds: list, **kw: object) -> list[int]:
        calls.clear()
        sampling.sample_cfg(m, conds, u, guidance_scale=2.0, num_inference_steps=N, x_T=x, **kw)
        return list(calls)

    assert run([c1]) == [2 * B] * N  # plain CFG: one batched call of 2B rows
    assert run([c1, c2], weights=switch) == [2 * B] * N  # one prompt active at a time
    assert run([c1, c2], weights=[lambda t: 0.7, lambda t: 0.3]) == [3 * B] * N
    assert run([c1, c2], weights=switch, prune_below=-1.0) == [3 * B] * N  # naive
    assert run([c1[:1], c2[:1]], weights=switch) == [2 * B] * N  # 1-row conditions broadcast

    # conditions that are not tensors: one call per condition, same rows
    dict_obj = _gauss_obj(calls=calls)
    base = dict_obj.eps
    dict_obj.eps = lambda x_, a, c: base(x_, a, c["y"])
    md = ModuleModel.from_object("gauss-dict", dict_obj)
    calls.clear()
    sampling.sample_cfg(md, [{"y": c1}], {"y": u}, guidance_scale=2.0, num_inference_steps=N, x_T=x)
    assert calls == [2 * B] * N  # dicts of tensors concatenate per key
    list_obj = _gauss_obj(calls=calls)
    list_obj.eps = lambda x_, a, c: base(x_, a, torch.tensor(c * (x_.shape[0] // len(c))))
    ml = ModuleModel.from_object("gauss-list", list_obj)
    calls.clear()
    sampling.sample_cfg(ml, [[0] * B], [3] * B, guidance_scale=2.0, num_inference_steps=N, x_T=x)
    assert calls == [B, B] * N


def test_ddim_maps_noise_to_the_data_gaussian() -> None:
    m = _gauss_model(res=8)
    B = 400  # 25 600 values: below torch's intra-op parallel grain, so no thread contention
    x = sampling.model_noise(m, B, 1, "cpu")
    c = m.encode(["2"] * B)
    out = sampling.sample_cfg(m, [c], m.null_condition(B), guidance_scale=1.0, num_inference_steps=200, x_T=x)
    assert out.shape == (B, 1, 8, 8) and out.dtype == torch.float64
    assert float(out.mean()) == pytest.approx(1.2, abs=0.015)
    assert float(out.std()) == pytest.approx(0.5, rel=0.03)


def test_on_step_receives_the_guidance_term() -> None:
    m = _gauss_model()
    B = 2
    x = sampling.model_noise(m, B, 2, "cpu")
    c1, c2, u = m.encode(["0"] * B), m.encode(["1"] * B), m.null_condition(B)
    ws = [lambda t: 0.25 + t, lambda t: 1.5 - t]
    seen: list[tuple] = []

    def on_step(step, t, a, x_t, e_u, e_c, e_g):
        seen.append((step, t, a, x_t, e_u, e_c, e_g))

    sampling.sample_cfg(
        m, [c1, c2], u, guidance_scale=4.0, num_inference_steps=5, x_T=x, weights=ws, on_step=on_step
    )
    grid = sampling.ddim_time_grid(m.schedule, 5)
    assert [s[0] for s in seen] == list(range(5))
    for step, t, a, x_t, e_u, e_c, e_g in seen:
        assert t == grid[step] and a == pytest.approx(float(m.schedule.alpha_bar(t)))
        ab = torch.full((B,), a, dtype=torch.float64)
        eu = _eps_k(x_t, ab, MEANS[3], STDS[3])
        g = ws[0](t) * (_eps_k(x_t, ab, MEANS[0], STDS[0]) - eu) + ws[1](t) * (
            _eps_k(x_t, ab, MEANS[1], STDS[1]) - eu
        )
        torch.testing.assert_close(e_u, eu, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(e_c - e_u, g, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(e_g, eu + 4.0 * g, rtol=1e-10, atol=1e-10)


def test_same_seed_is_bitwise_reproducible() -> None:
    m = _gauss_model()
    runs = []
    for _ in range(2):
        x = sampling.model_noise(m, 4, 123, "cpu")
        c = m.encode(["1"] * 4)
        runs.append(
            sampling.sample_cfg(m, [c], m.null_condition(4), guidance_scale=3.0, num_inference_steps=12, x_T=x)
        )
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(sampling.model_noise(m, 4, 123, "cpu"), sampling.model_noise(m, 4, 124, "cpu"))


def test_guidance_one_is_conditional_ddim() -> None:
    """s = 1 equals DDIM on ε(x; c) alone, written as eq. 4 (the √(ᾱ_{t−1}/ᾱ_t) form)."""
    m = _gauss_model()
    B, N = 5, 20
    x_T = sampling.model_noise(m, B, 7, "cpu")
    c = m.encode(["0"] * B)
    got = sampling.sample_cfg(m, [c], m.null_condition(B), guidance_scale=1.0, num_inference_steps=N, x_T=x_T)
    grid = sampling.ddim_time_grid(m.schedule, N)
    ab = [float(v) for v in m.schedule.alpha_bar(grid)] + [1.0]
    x = x_T.clone()
    for i in range(N):
        e = _eps_k(x, torch.full((B,), ab[i], dtype=torch.float64), MEANS[0], STDS[0])
        r = math.sqrt(ab[i + 1] / ab[i])
        x = r * x + (math.sqrt(1 - ab[i + 1]) - r * math.sqrt(1 - ab[i])) * e
    torch.testing.assert_close(got, x, rtol=1e-10, atol=1e-10)
    # and guidance changes it
    g3 = sampling.sample_cfg(m, [c], m.null_condition(B), guidance_scale=3.0, num_inference_steps=N, x_T=x_T)
    assert not torch.allclose(g3, x)


WEIGHTS_BY_RELATIVE_NAME = """
import torch
from safetensors.torch import load_file

SCALE = load_file("weights.safetensors")["scale"]   # at import: a relative name

class M:
    resolution, channels = 4, 1
    schedule = {"type": "cosine"}
    def __init__(self, scale):
        self.scale = scale
    def encode(self, prompts):
        return torch.zeros(len(prompts), dtype=torch.long)
    def null_condition(self, batch):
        return torch.ones(batch, dtype=torch.long)
    def eps(self, x, a, c):
        return x * self.scale.to(x.dtype)

def load(device=None, dtype=None):
    return M(load_file("weights.safetensors")["scale"] * SCALE)   # in the factory: relative too
"""


def _weights_folder(folder: Path, modname: str, source: str, scale: float) -> dict:
    from safetensors.torch import save_file

    _write(folder, f"{modname}.py", source)
    save_file({"scale": torch.tensor(scale)}, str(folder / "weights.safetensors"))
    return {"kind": "module", "path": str(folder), "factory": f"{modname}:load"}


def test_module_factory_finds_files_by_relative_name_in_its_folder(tmp_path: Path, monkeypatch) -> None:
    """The README's ``Net.load("weights.safetensors")``: relative names in the module and the
    factory are resolved against the model's ``path``, not the caller's working directory, and
    the caller's working directory is left as it was (also when the factory raises)."""
    spec = _weights_folder(tmp_path / "user", "relweights", WEIGHTS_BY_RELATIVE_NAME, 1.5)
    elsewhere = tmp_path / "workflow"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    m = models.load_module_model("mine", spec)
    assert Path.cwd() == elsewhere
    x = torch.ones(1, 1, 4, 4)
    assert float(m.eps(x, torch.full((1,), 0.5), m.encode(["a"]))[0, 0, 0, 0]) == 2.25  # 1.5 · 1.5
    spec2 = _weights_folder(tmp_path / "user2", "relweights2", WEIGHTS_BY_RELATIVE_NAME, 2.0)
    (tmp_path / "user2" / "weights.safetensors").rename(tmp_path / "user2" / "moved.safetensors")
    with pytest.raises(ModelContractError) as ei:
        models.load_module_model("mine2", spec2)
    _assert_one_line(ei.value, "mine2", "relweights2:load", "weights.safetensors")
    assert Path.cwd() == elsewhere


def test_module_factory_with_a_path_parameter_gets_the_folder(tmp_path: Path, monkeypatch) -> None:
    """A factory that names a ``path`` parameter receives the model's folder (absolute); one
    without it (or with only ``**kwargs``) is called with device and dtype alone."""
    folder = tmp_path / "user"
    _write(
        folder,
        "withpath.py",
        GOOD.replace("EPS", "x * 0.5").replace("PATCH", "m.folder = path").replace(
            "def load(device=None, dtype=None):", "def load(device=None, dtype=None, path=None):"
        ),
    )
    _write(
        folder,
        "kwonly.py",
        GOOD.replace("EPS", "x * 0.5").replace("PATCH", "m.extra = sorted(kw)").replace(
            "def load(device=None, dtype=None):", "def load(device=None, dtype=None, **kw):"
        ),
    )
    monkeypatch.chdir(tmp_path)
    m = models.load_module_model("p", {"kind": "module", "path": "user", "factory": "withpath:load"})
    assert Path(m.obj.folder) == folder.resolve() and Path(m.obj.folder).is_absolute()
    k = models.load_module_model("k", {"kind": "module", "path": str(folder), "factory": "kwonly:load"})
    assert k.obj.extra == []


# --------------------------------------------------------------------------------------
# acceptance: somebody else's model (EDM, x0, σ, class labels, 12×12×1)
# --------------------------------------------------------------------------------------


def test_user_edm_model_end_to_end() -> None:
    spec = {"kind": "module", "path": str(USER_MODELS), "factory": "edm_classes:load"}
    models.check_module_spec("edm_classes", spec)
    m = models.load_module_model("edm_classes", spec, device="cpu")
    assert (m.resolution, m.channels, m.dtype) == (12, 1, torch.float32)
    assert isinstance(m.schedule, EDMSchedule) and m.schedule.sigma_max == 80.0
    x = sampling.model_noise(m, 2, 0, "cpu")
    steps: list[int] = []
    out = sampling.sample_cfg(
        m,
        [m.encode(["digit 3", "digit 3"])],
        m.null_condition(2),
        guidance_scale=3.0,
        num_inference_steps=30,
        x_T=x,
        on_step=lambda step, *a: steps.append(step),
    )
    assert out.shape == (2, 1, 12, 12) and steps == list(range(30))
    means = m.obj.net.means[:10]
    rms = ((out[:, None] - means[None]) ** 2).mean(dim=(2, 3, 4)).sqrt()  # (2, 10)
    assert rms.argmin(dim=1).tolist() == [3, 3]
    assert float(rms[:, 3].max()) < 0.15  # within the class std 0.1 (blocks sit at ±0.8)
    others = torch.cat([rms[:, :3], rms[:, 4:]], dim=1)
    assert float(others.min()) > 0.4


def test_is_denoiser_dispatches_every_registry_model() -> None:
    """The one dispatch of the stage entry points: a ModuleModel runs the project's DDIM, a
    diffusers pipeline (the oracle) its own loop; anything else is refused in one line."""
    from reschrom.models.module import is_denoiser
    from reschrom.models.oracle import build_oracle_pipeline

    assert is_denoiser(_gauss_model()) is True
    assert is_denoiser(build_oracle_pipeline(resolution=8, device="cpu")) is False
    with pytest.raises(TypeError, match=r"^SimpleNamespace is neither a diffusers pipeline nor .*ModuleModel"):
        is_denoiser(_gauss_obj(8, None))  # the raw contract object, not wrapped
