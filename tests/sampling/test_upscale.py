"""Cascaded upscaling (§4.2): the analytic model, the variants, files, tiny-UNet end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from reschrom.measure import metrics
from reschrom.sampling import samplers as sampling
from reschrom.sampling import upscale
from reschrom.theory import pyramid


@pytest.fixture(scope="module")
def data():
    return upscale.HaarGaussian.default(resolution=16)


@pytest.fixture(scope="module")
def models(data):
    return upscale.analytic_models(data, num_levels=3)


def test_haar_gaussian_band_energies_and_levels(data):
    x = data.sample(4000, 0) - data.mean
    e = metrics.mean_band_energies(x)  # per pixel: s_m² · dim(band m) / (C R²)
    R = data.resolution
    dims = [0.75 * (R // 2**m) ** 2 for m in range(len(e) - 1)] + [1.0]
    expect = torch.tensor([s * s * d / R**2 for s, d in zip(data.band_std, dims)], dtype=torch.float64)
    torch.testing.assert_close(e, expect, rtol=0.08, atol=0)
    # D[x0] is the level-1 model: same band energies
    low = data.level(1)
    xl = pyramid.downsample(data.sample(4000, 1), 1) - low.mean
    torch.testing.assert_close(metrics.mean_band_energies(xl), metrics.mean_band_energies(low.sample(4000, 2) - low.mean), rtol=0.08, atol=0)


def test_analytic_composite_equals_exact_full_resolution_eps(data, models):
    """Exact ε_low and ε_res (eq. 20–21) combine by eq. 22 into the exact ε of the data model,
    and the M-level composite (eq. 24) too; the ablations do not."""
    sched = models["residual"].schedule
    x = sampling.initial_noise((3, 3, 16, 16), 4, dtype=torch.float64)
    t = torch.tensor([900.0, 450.0, 60.0])
    exact = data.predictor(sched)(x, t)
    full = upscale.variant_setup("full", models)[0](x, t)
    multi = upscale.variant_setup("multilevel", models)[0](x, t)
    torch.testing.assert_close(full, exact, rtol=0, atol=2e-3)
    torch.testing.assert_close(multi, exact, rtol=0, atol=2e-3)
    for v in ("no_time_adjustment", "no_intensity_rescaling", "neither"):
        err = (upscale.variant_setup(v, models)[0](x, t) - exact).abs().max()
        assert err > 0.05, v


def test_wrong_tau_is_measurably_worse(data, models):
    """On a fixed seed, `full` is closer to the data spectrum than `no_time_adjustment`."""
    ref = data.sample(512, 99)
    kw = dict(num_samples=48, num_inference_steps=50, seed=0, batch_size=48, threshold="none", progress=False)
    full = upscale.sample_variant("full", models, **kw)["images"]
    wrong = upscale.sample_variant("no_time_adjustment", models, **kw)["images"]
    m_full = metrics.sample_metrics(full, ref)
    m_wrong = metrics.sample_metrics(wrong, ref)
    assert m_full["lsd_db"] < 0.6 * m_wrong["lsd_db"]
    assert m_wrong["residual_noise"] > m_full["residual_noise"] + 0.3  # noise left at the low-res finest band
    # the cascade with exact parts samples like the exact full-resolution model
    sched = models["residual"].schedule
    exact = sampling.sample(
        data.predictor(sched), sampling.make_scheduler("ddim", models["residual"].scheduler_config),
        sampling.initial_noise((48, 3, 16, 16), 0), 50, progress=False,
    )
    assert abs(m_full["lsd_db"] - metrics.sample_metrics(exact, ref)["lsd_db"]) < 0.05


def test_variants_share_seeds(models):
    kw = dict(num_samples=4, num_inference_steps=5, seed=3, batch_size=2, threshold="none", progress=False)
    a = upscale.sample_variant("full", models, **kw)["images"]
    torch.testing.assert_close(a, upscale.sample_variant("full", models, **kw)["images"])
    near = upscale.sample_variant("nearest", models, **kw)
    bic = upscale.sample_variant("bicubic", models, **kw)
    torch.testing.assert_close(near["lowres"], bic["lowres"])
    torch.testing.assert_close(pyramid.downsample(near["images"], 1), near["lowres"])
    # the low-res model starts from the coarse part 2D[x_T] of the same full-resolution noise
    low = models["lowres"]
    x_T = 2 * pyramid.downsample(sampling.initial_noise((4, 3, 16, 16), 3), 1)
    own = sampling.sample(low.predictor, sampling.make_scheduler("ddim", low.scheduler_config), x_T, 5, progress=False)
    torch.testing.assert_close(near["lowres"], own)


def test_unknown_variant_is_rejected(models):
    with pytest.raises(ValueError, match="allowed"):
        upscale.variant_setup("sharpest", models)


def _tiny_pipeline_folder(path, size, seed):
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=size, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    unet.save_pretrained(path / "unet")
    DDPMScheduler(num_train_timesteps=100).save_pretrained(path / "scheduler")
    return str(path)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "lowres": _tiny_pipeline_folder(root / "lowres", 8, 0),
        "residual": _tiny_pipeline_folder(root / "residual", 16, 1),
        **{f"level_{m}": _tiny_pipeline_folder(root / f"level_{m}", 16 // 2**m, 2 + m) for m in range(2)},
    }


@pytest.mark.parametrize("variant", upscale.VARIANTS)
def test_tiny_unets_every_variant(tiny_dirs, tmp_path, variant):
    out = tmp_path / f"{variant}.safetensors"
    png = tmp_path / f"{variant}.png"
    upscale.run_variant(
        variant, out, png, "trained", tiny_dirs, num_samples=3, num_inference_steps=3, batch_size=2,
        device="cpu",
    )
    x = upscale.load_images(out)
    assert x.shape == (3, 3, 16, 16) and torch.isfinite(x).all()
    assert png.stat().st_size > 0
    # thresholded (multires by default): pixels within [-1, 1] up to rounding (bicubic
    # interpolation overshoots; the metrics count that as clipping)
    if variant != "bicubic":
        assert x.abs().max() <= 1 + 1e-4


def test_one_job_for_all_variants_equals_one_job_each(tiny_dirs, tmp_path):
    """run_variants loads the folders once and writes every variant; each file holds bitwise
    the samples of a run of that variant alone (the per-variant seeds do not depend on the others)."""
    from safetensors.torch import load_file

    variants = ["full", "nearest", "multilevel"]
    kw = dict(num_samples=3, num_inference_steps=3, batch_size=2, device="cpu")
    outs = [tmp_path / f"all_{v}.safetensors" for v in variants]
    upscale.run_variants(variants, outs, [tmp_path / f"all_{v}.png" for v in variants], "trained", tiny_dirs, **kw)
    for v, out in zip(variants, outs):
        alone = tmp_path / f"one_{v}.safetensors"
        upscale.run_variant(v, alone, tmp_path / f"one_{v}.png", "trained", tiny_dirs, **kw)
        a, b = load_file(str(out)), load_file(str(alone))
        assert a.keys() == b.keys() and a
        for k in a:
            assert torch.equal(a[k], b[k]), (v, k)
    with pytest.raises(ValueError, match="2 variants, 1 sample files"):
        upscale.run_variants(["full", "nearest"], [outs[0]], outs[:2], "trained", tiny_dirs, **kw)


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="lowres"):
        upscale.load_model(tmp_path / "lowres")


def test_load_images_maps_uint8(tmp_path):
    from safetensors.torch import save_file

    save_file({"images": torch.tensor([[[[0, 255]]]], dtype=torch.uint8)}, str(tmp_path / "d.safetensors"))
    x = upscale.load_images(tmp_path / "d.safetensors")
    np.testing.assert_allclose(x.numpy().ravel(), [-1.0, 1.0])
    with pytest.raises(KeyError, match="images"):
        upscale.load_images(tmp_path / "d.safetensors", key="nope")


@pytest.mark.workflow
def test_workflow_analytic_upscaling(tmp_path):
    """The upscale rules end to end (analytic source: no training) in a temporary copy; then
    changing only a figure setting re-plots without resampling."""
    import yaml

    from reschrom.io import read_parquet
    from workflow_utils import copy_workflow, plan, snakemake

    wd = copy_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((wd / "configs" / "smoke.yaml").read_text())
    cfg["upscale"] = {**cfg.get("upscale", {}), "source": "analytic", "variants": list(upscale.VARIANTS), "grid_rows": ["nearest", "no_time_adjustment", "no_intensity_rescaling", "full"], "num_samples": 6, "num_inference_steps": 5,
                      "analytic": {"resolution": 16, "num_reference": 32}}
    (wd / "up.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["results/figures/upscale_analytic.png", "results/figures/upscale_spectra_analytic.png"]
    snakemake(wd, *targets, "--cores", "2", "--configfile", "up.yaml")
    m = read_parquet(wd / "results/upscale/analytic/metrics.parquet")
    assert list(m["variant"]) == list(upscale.VARIANTS) and m["lsd_db"].notna().all()
    for v in upscale.VARIANTS:
        assert (wd / f"results/upscale/analytic/samples/{v}.png").is_file()
    cfg["upscale"]["grid_columns"] = 3
    (wd / "up.yaml").write_text(yaml.safe_dump(cfg))
    jobs = plan(wd, *targets, "--configfile", "up.yaml", "--rerun-triggers", "mtime", "params", "input")
    assert [j.rule for j in jobs] == ["plot_upscale_grid"]
