"""Paper-scale configurations of the families people measure today (issue 22, item 7):
``configs/paper_families.yaml`` layered on ``configs/paper.yaml`` plans offline, with the GPU,
memory and time of its rule groups on every job, and a model entry's ``call`` reaches the
pipeline call (FLUX.1-dev's true CFG: the stage's guidance_scale as ``true_cfg_scale``, its
negative prompt from ``call``)."""

from __future__ import annotations

import pytest
import torch
import yaml

from workflow_utils import REPO, copy_workflow, plan

NEW = ("sdxl", "sd35", "flux_dev", "qwen_image", "pixart_sigma", "sana")


def test_paper_families_plan_offline_with_resources(tmp_path, monkeypatch):
    wd = copy_workflow(tmp_path / "wf")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fam = yaml.safe_load((wd / "configs/paper_families.yaml").read_text())
    jobs = plan(wd, "--configfile", "configs/paper.yaml", "configs/paper_families.yaml", timeout=600)
    assert not (wd / "results").exists(), "a dry run wrote results"
    for name in NEW:
        probes = [j for j in jobs if j.rule.startswith(f"guidance_dump_{name}_")]
        composes = [j for j in jobs if j.rule == "compose_pair" and f"model={name}," in j.wildcards + ","]
        assert probes and composes, f"{name}: no guidance dump or compose job planned"
        for j, group in [(j, "probe") for j in probes] + [(j, "sample") for j in composes]:
            want = fam["resources"][group]
            assert j.resources.get("gpu") == str(want["gpu"]), (name, j.rule, j.resources)
            assert j.resources.get("mem_mb") == str(want["mem_mb"]), (name, j.rule, j.resources)
            assert j.resources.get("runtime") == str(want["runtime"]), (name, j.rule, j.resources)


def test_model_call_reaches_the_pipeline_as_true_cfg():
    """A kind: pipeline entry's ``call`` (here FLUX.1-dev's, on the tiny Flux) goes to every
    pipeline call of a measurement, and the stage's guidance_scale to ``true_cfg_scale``: the
    probe sees two calls per step (true CFG on). Setting the CFG scale in ``call`` is one line."""
    from builders import build_tiny_flux_pipeline
    from reschrom.measure.measurement import measure_guidance
    from reschrom.models.registry import load_spec

    cfg = yaml.safe_load((REPO / "configs/paper_families.yaml").read_text())
    spec = load_spec(cfg, "flux_dev")
    assert spec["call"]["negative_prompt"] == ""
    pipe = build_tiny_flux_pipeline()
    pipe.reschrom_call_kwargs = {**spec["call"], "max_sequence_length": 16}
    calls = []
    h = pipe.transformer.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        df, res = measure_guidance(
            pipe, "a red circle", model="flux_dev", seeds=[0], num_samples=1, guidance_scale=3.0,
            num_inference_steps=2, resolution=16,
        )
    finally:
        h.remove()
    assert len(calls) == 4 and res[0].num_steps == 2  # cond and uncond per step: true CFG ran
    pipe.reschrom_call_kwargs = {"true_cfg_scale": 2.0}
    with pytest.raises(ValueError) as exc:
        measure_guidance(pipe, "a red circle", model="flux_dev", seeds=[0], num_samples=1, guidance_scale=3.0,
                         num_inference_steps=2, resolution=16)
    assert "\n" not in str(exc.value) and "true_cfg_scale" in str(exc.value)
    assert torch.isfinite(torch.as_tensor(df["energy_guidance"].to_numpy())).all()
