"""The family × capability matrix of issue 22: every text-to-image family the adapter reads.

One tiny random-weight pipeline per family (``tests/helpers/builders.py``, offline), and for each:

* ``test_probe_bitwise`` — the probed call's latents are bitwise those of the unprobed call;
* ``test_probe_guidance`` — the dumped CFG term g equals an independent recomputation from the
  denoiser's own two predictions of each step (a plain forward hook of the test; batched
  [uncond, cond] calls split, two-call loops paired in the loop's order, packed latents unpacked
  by the pipeline's own ``_unpack_latents``; ε units from the scheduler's own tables);
* ``test_probe_clock`` — the recorded σ / DDPM step equals the scheduler's own for each step;
* ``test_two_call_order`` — (true-CFG loops) the first call of each step gets the prompt's
  embeddings (those of the same call with CFG off), the second the negative prompt's;
* ``test_compose`` — η = 0 and η = 1 reproduce the single-prompt latents to 1e-5, η = 0.5
  switches from the structure to the texture prompt where σ (or t/T) crosses 0.5;
* ``test_x0_capture`` — x̂0 capture runs on the (C, H, W) grid and equals x_t − σ·u (flow) or
  eq. 7 (ε) from the output the scheduler receives, recorded independently.

``scripts/families_table.py`` turns a junit report of this file into ``docs/families.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from reschrom.compose.composer import PromptComposer
from reschrom.compose.weights import heaviside_weights
from reschrom.measure.probe import GuidanceProbe, guidance_frame
from reschrom.measure.trajectory import capturing_x0
from reschrom.models.families import PromptEmbeddings
from reschrom.theory.pyramid import band_energies

PROMPT, STRUCT, TEX = "a red circle", "a red circle", "a blue square with stripes"
STEPS = 3


@dataclass(frozen=True)
class Family:
    """How to build and call one family's tiny pipeline, and what its denoiser outputs."""

    builder: str
    pred: str  # epsilon | v_prediction | flow
    call: dict[str, Any] = field(default_factory=dict)
    builder_kw: dict[str, Any] = field(default_factory=dict)
    encode: dict[str, Any] = field(default_factory=dict)  # encode_prompt options the call also gets
    sign: float = 1.0  # the loop's sign of the transformer output (Lumina 2: −1)
    scale: str = "guidance_scale"
    output: str = "latent"
    compose_scale: float = 3.0


FAMILIES: dict[str, Family] = {
    "SD 1.5": Family("build_tiny_sd_pipeline", "epsilon", dict(height=32, width=32)),
    "SD 2 (v)": Family("build_tiny_sd_v_pipeline", "v_prediction", dict(height=32, width=32)),
    "SDXL": Family("build_tiny_sdxl_pipeline", "epsilon", dict(height=16, width=16)),
    "DeepFloyd IF": Family("build_tiny_if_pipeline", "epsilon", dict(height=16, width=16, clean_caption=False), output="pt"),
    "PixArt-α": Family(
        "build_tiny_pixart_pipeline", "epsilon", dict(height=16, width=16, use_resolution_binning=False, clean_caption=False)
    ),
    "PixArt-Σ": Family(
        "build_tiny_pixart_pipeline", "epsilon", dict(height=16, width=16, use_resolution_binning=False, clean_caption=False),
        builder_kw=dict(sigma=True),
    ),
    "Sana (Euler)": Family(
        "build_tiny_sana_pipeline", "flow", dict(height=32, width=32, use_resolution_binning=False),
        encode=dict(complex_human_instruction=None, max_sequence_length=16),
    ),
    "Sana (DPM-Solver flow)": Family(
        "build_tiny_sana_pipeline", "flow", dict(height=32, width=32, use_resolution_binning=False),
        builder_kw=dict(scheduler="dpm"), encode=dict(complex_human_instruction=None, max_sequence_length=16),
    ),
    "SD3": Family("build_tiny_sd3_pipeline", "flow", dict(height=16, width=16)),
    "AuraFlow": Family("build_tiny_auraflow_pipeline", "flow", dict(height=16, width=16), compose_scale=30.0),
    "Flux (true CFG)": Family(
        "build_tiny_flux_pipeline", "flow", dict(height=16, width=16, negative_prompt=""),
        encode=dict(max_sequence_length=16), scale="true_cfg_scale",
    ),
    "Qwen-Image": Family(
        "build_tiny_qwenimage_pipeline", "flow", dict(height=32, width=32, negative_prompt=""),
        encode=dict(max_sequence_length=16), scale="true_cfg_scale",
    ),
    "Lumina 2": Family(
        "build_tiny_lumina2_pipeline", "flow", dict(height=64, width=64),
        encode=dict(max_sequence_length=16, system_prompt=""), sign=-1.0,
    ),
    "CogView4": Family("build_tiny_cogview4_pipeline", "flow", dict(height=16, width=16)),
    "HunyuanDiT": Family(
        "build_tiny_hunyuandit_pipeline", "v_prediction", dict(height=64, width=64, use_resolution_binning=False)
    ),
    "Kandinsky 2.2": Family("build_tiny_kandinsky22_pipeline", "epsilon", dict(height=32, width=32)),
    "SDXL Modular (CFG guider)": Family(
        "build_tiny_sdxl_modular_pipeline", "epsilon", dict(height=16, width=16), output="latents"
    ),
}

IMAGE_EMBED_DIM = 16
"""Kandinsky 2.2's conditions are CLIP image embeddings (its prior's output): one fixed random
embedding per prompt of this file, and one for the negative condition."""
_IMAGE_EMBEDS = {
    p: torch.randn(1, IMAGE_EMBED_DIM, generator=torch.Generator().manual_seed(i))
    for i, p in enumerate(("", STRUCT, TEX))
}


def _conditions(prompt: str) -> PromptEmbeddings:
    """Kandinsky 2.2: the (image_embeds, negative_image_embeds) of ``prompt``."""
    return PromptEmbeddings(_IMAGE_EMBEDS[prompt], _IMAGE_EMBEDS[""])


def _modular(pipe: Any) -> bool:
    return any(c.__name__ == "ModularPipeline" for c in type(pipe).__mro__)


def _call(pipe: Any, kw: dict[str, Any]) -> dict[str, Any]:
    """``kw`` as the pipeline takes it: a Modular pipeline's CFG scale is its guider's, its output
    is named by ``output``."""
    if not _modular(pipe):
        return kw
    kw = dict(kw)
    pipe.guider.guidance_scale = kw.pop("guidance_scale")
    kw.pop("output_type", None)
    return kw


def _images(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.images

_PIPES: dict[str, Any] = {}


def _pipe(name: str) -> Any:
    if name not in _PIPES:
        import builders

        f = FAMILIES[name]
        _PIPES[name] = getattr(builders, f.builder)(**f.builder_kw)
    return _PIPES[name]


def _kw(name: str, scale: float = 3.0, **extra: Any) -> dict[str, Any]:
    f = FAMILIES[name]
    out = {"output": "latents"} if f.output == "latents" else {"output_type": f.output}
    return {"num_inference_steps": STEPS, **out, f.scale: scale, **f.call, **f.encode, **extra}


def _run(pipe: Any, prompt: str, kw: dict[str, Any]) -> torch.Tensor:
    if not hasattr(pipe, "encode_prompt") and not _modular(pipe):  # Kandinsky 2.2: image embeddings
        c = _conditions(prompt)
        kw = {"image_embeds": c.cond, "negative_image_embeds": c.uncond, **kw}
    else:
        kw = {"prompt": prompt, **kw}
    with torch.no_grad():
        return _images(pipe(generator=torch.Generator().manual_seed(0), **_call(pipe, kw)))


@pytest.fixture(params=list(FAMILIES), ids=list(FAMILIES))
def family(request) -> str:
    return request.param


class CallRecorder:
    """Plain forward hook: every denoiser call's timestep, x_t, text embeddings and raw output."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls: list[dict[str, torch.Tensor]] = []
        names = list(__import__("inspect").signature(module.forward).parameters)

        def hook(m, args, kwargs, out):
            bound = {**dict(zip(names, args)), **kwargs}
            x = bound.get("hidden_states", bound.get("sample"))
            o = out[0] if isinstance(out, tuple) else getattr(out, "sample", out)
            emb = bound.get("encoder_hidden_states")
            if emb is None:  # Kandinsky 2.2: the image embedding
                emb = bound["added_cond_kwargs"]["image_embeds"]
            self.calls.append(
                {
                    "t": torch.as_tensor(bound["timestep"]).detach().clone(),
                    "x": x.detach().clone(),
                    "emb": emb.detach().clone(),
                    "out": o.detach().clone(),
                }
            )

        self.h = module.register_forward_hook(hook, with_kwargs=True)

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.h.remove()


def _denoiser(pipe: Any) -> torch.nn.Module:
    return getattr(pipe, "unet", None) or pipe.transformer


def _grid(pipe: Any, x: torch.Tensor, kw: dict[str, Any]) -> torch.Tensor:
    """Packed (B, seq, 4C) tokens → (B, C, H, W) by the pipeline's own ``_unpack_latents``."""
    if x.ndim != 3:
        return x
    out = type(pipe)._unpack_latents(x, kw["height"], kw["width"], pipe.vae_scale_factor)
    return out[:, :, 0] if out.ndim == 5 else out


def _pairs(calls: list[dict[str, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x_t, out_uncond, out_cond) per step: batched calls split in [uncond, cond] halves, two
    calls per step taken in the loops' order (conditional first)."""
    if len(calls) == 2 * STEPS:
        return [(c["x"], u["out"], c["out"]) for c, u in zip(calls[0::2], calls[1::2])]
    assert len(calls) == STEPS
    out = []
    for c in calls:
        n = c["out"].shape[0] // 2
        out.append((c["x"][:n], c["out"][:n], c["out"][n:]))
    return out


def _sigmas(pipe: Any) -> np.ndarray:
    return torch.as_tensor(pipe.scheduler.sigmas)[:STEPS].double().numpy()


# --------------------------------------------------------------------------------------
# the probe
# --------------------------------------------------------------------------------------


def test_probe_bitwise(family):
    pipe = _pipe(family)
    kw = _kw(family)
    ref = _run(pipe, PROMPT, kw)
    with GuidanceProbe(pipe):
        out = _run(pipe, PROMPT, kw)
    assert torch.equal(out, ref), f"{family}: the probe changed the image"


def test_probe_guidance(family):
    pipe = _pipe(family)
    f = FAMILIES[family]
    kw = _kw(family)
    with CallRecorder(_denoiser(pipe)) as rec, GuidanceProbe(pipe) as probe:
        _run(pipe, PROMPT, kw)
    res = probe.result()
    pairs = _pairs(rec.calls)
    assert res.num_steps == len(pairs) == STEPS
    sig = _sigmas(pipe) if f.pred == "flow" else None
    nonzero: list[bool] = []
    for k, (x, out_u, out_c) in enumerate(pairs):
        x, out_u, out_c = (_grid(pipe, v, kw).double() for v in (x, out_u, out_c))
        C = x.shape[1]
        d = out_c[:, :C] - out_u[:, :C]
        if f.pred == "flow":  # u = sign·out, ε = x + (1−σ)u: g = (1−σ)·sign·(out_c − out_u)
            g = (1 - sig[k]) * f.sign * d
        elif f.pred == "v_prediction":  # ε = √ᾱ v + √(1−ᾱ) x
            ab = float(pipe.scheduler.alphas_cumprod[int(pipe.scheduler.timesteps[k])])
            g = ab**0.5 * d
        else:
            g = d
        nonzero.append(float(g.abs().max()) > 0)  # flow at σ = 1: g = 0
        np.testing.assert_allclose(res.energies[k, 0], band_energies(g, 2).numpy(), rtol=1e-4, atol=1e-12)
    assert sum(nonzero) >= STEPS - 1, "the two predictions agree: the test could not fail"
    assert res.grid == tuple(_grid(pipe, pairs[0][0], kw).shape[1:])
    df = guidance_frame(res, model=family, prompt_id="p", prompt=PROMPT, seed=0, resolution=res.resolution)
    assert (df["grid_channels"] == res.grid[0]).all() and (df["grid_width"] == res.grid[2]).all()


def test_probe_clock(family):
    pipe = _pipe(family)
    f = FAMILIES[family]
    with GuidanceProbe(pipe) as probe:
        _run(pipe, PROMPT, _kw(family))
    res = probe.result()
    if f.pred == "flow":
        sig = _sigmas(pipe)  # the scheduler's own σ of each step (shifts, integer timesteps included)
        np.testing.assert_allclose(res.t_native, sig, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(res.alpha_bar, (1 - sig) ** 2 / ((1 - sig) ** 2 + sig**2), rtol=1e-5, atol=1e-12)
    else:
        ts = pipe.scheduler.timesteps[:STEPS].double().numpy()
        np.testing.assert_array_equal(res.t_native, ts)
        ac = pipe.scheduler.alphas_cumprod.double().numpy()
        np.testing.assert_allclose(res.alpha_bar, ac[ts.astype(int)], rtol=1e-12)


def test_two_call_order(family):
    """True-CFG loops: the conditional call comes first (the probe's pairing relies on it)."""
    pipe = _pipe(family)
    if not FAMILIES[family].scale == "true_cfg_scale" and family not in ("Lumina 2", "CogView4") and not _modular(pipe):
        pytest.skip("batched [uncond, cond] loop")
    with CallRecorder(_denoiser(pipe)) as off:  # CFG off: the conditional call alone
        _run(pipe, PROMPT, _kw(family, scale=1.0, **({"negative_prompt": None} if family.startswith("Flux") else {})))
    with CallRecorder(_denoiser(pipe)) as on:
        _run(pipe, PROMPT, _kw(family))
    assert len(off.calls) == STEPS and len(on.calls) == 2 * STEPS
    cond = off.calls[0]["emb"]
    for first, second in zip(on.calls[0::2], on.calls[1::2]):
        assert first["x"].data_ptr() == second["x"].data_ptr() or torch.equal(first["x"], second["x"])
        assert torch.equal(first["emb"], cond)
        assert first["emb"].shape != second["emb"].shape or not torch.equal(second["emb"], cond)


def test_cfg_off_is_one_line(family):
    pipe = _pipe(family)
    f = FAMILIES[family]
    extra = {"negative_prompt": None} if family.startswith("Flux") else {}
    with pytest.raises(ValueError) as exc:
        with GuidanceProbe(pipe) as probe:
            _run(pipe, PROMPT, _kw(family, scale=1.0, **extra))
        probe.result()
    msg = str(exc.value)
    assert "\n" not in msg and type(pipe).__name__ in msg and "not doing CFG" in msg and f.scale in msg


# --------------------------------------------------------------------------------------
# composing and x̂0
# --------------------------------------------------------------------------------------


def test_compose(family):
    pipe = _pipe(family)
    f = FAMILIES[family]
    kw = _kw(family, scale=f.compose_scale)
    ref_s = _run(pipe, STRUCT, kw).double()
    ref_x = _run(pipe, TEX, kw).double()
    tol = 1e-5 * float(ref_s.abs().max())
    assert float((ref_s - ref_x).abs().max()) > 50 * tol, "the two prompts give the same latents: the test could not fail"
    call = _call(pipe, {k: v for k, v in kw.items() if k != "negative_prompt"})  # the composer passes embeddings
    # Kandinsky 2.2 composes over image embeddings, given as PromptEmbeddings
    prompts = [STRUCT, TEX] if hasattr(pipe, "encode_prompt") or _modular(pipe) else [_conditions(STRUCT), _conditions(TEX)]
    for eta, ref in ((0.0, ref_s), (1.0, ref_x)):
        c = PromptComposer(pipe, prompts, heaviside_weights(eta), encode_kwargs=f.encode)
        out = _images(c(generator=torch.Generator().manual_seed(0), **call)).double()
        err = float((out - ref).abs().max())
        assert err <= tol, f"{family}: η = {eta} differs from the single-prompt latents by {err:.3g} (tolerance {tol:.3g})"
    # the steps' times: the scheduler's σ (flow) or t/T; η = 0.5 where the schedule crosses it,
    # else (a strongly shifted flow schedule of 3 steps) between its last two steps
    sig = _sigmas(pipe) if f.pred == "flow" else pipe.scheduler.timesteps[:STEPS].double().numpy() / 1000
    eta = 0.5 if sig.min() < 0.5 <= sig.max() else float(sig[1] + sig[2]) / 2
    c = PromptComposer(pipe, prompts, heaviside_weights(eta), encode_kwargs=f.encode)
    mid = _images(c(generator=torch.Generator().manual_seed(0), **call)).double()
    assert not torch.equal(mid, ref_s) and not torch.equal(mid, ref_x)
    assert len(c.records) == STEPS
    np.testing.assert_allclose([r.t_frac for r in c.records], sig, rtol=1e-6)
    assert [r.active for r in c.records] == [(0,) if s >= eta else (1,) for s in sig]


def test_x0_capture(family):
    pipe = _pipe(family)
    f = FAMILIES[family]
    kw = _kw(family)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    sched = pipe.scheduler
    original = type(sched).step

    def spy(self, model_output, timestep, sample, *a, **k):
        seen.append((model_output.detach().clone(), sample.detach().clone()))
        return original(self, model_output, timestep, sample, *a, **k)

    type(sched).step = spy  # the class: capturing_x0 wraps the instance's step over it
    try:
        with capturing_x0(pipe) as cap:
            _run(pipe, PROMPT, kw)
    finally:
        type(sched).step = original
    assert len(cap.x0) == len(seen) == STEPS
    for k, ((u, x), x0) in enumerate(zip(seen, cap.x0)):
        x, u = _grid(pipe, x, kw).double(), _grid(pipe, u, kw).double()
        assert x0.shape == x.shape
        if f.pred == "flow":
            want = x - _sigmas(pipe)[k] * u
        else:
            ab = float(sched.alphas_cumprod[int(sched.timesteps[k])])
            o = u[:, : x.shape[1]]
            want = (x - (1 - ab) ** 0.5 * o) / ab**0.5 if f.pred == "epsilon" else ab**0.5 * x - (1 - ab) ** 0.5 * o
        torch.testing.assert_close(x0.double(), want, rtol=1e-4, atol=1e-4)
