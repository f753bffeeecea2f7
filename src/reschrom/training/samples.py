"""Samples of a trained model folder (the workflow's ``sample`` rules): any of the project's
trained models, DDIM with classifier-free guidance where it has text.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

# --------------------------------------------------------------------------------------
# does a trained model follow its captions? (shapes dataset only)
# --------------------------------------------------------------------------------------


def sample_images(
    folder: str | os.PathLike,
    prompts: Sequence[str] | None = None,
    n: int = 16,
    steps: int = 50,
    guidance_scale: float = 4.0,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    clip_sample: bool | None = None,
) -> torch.Tensor:
    """Samples in [-1, 1] of a saved model folder with a DDIM scheduler of ``steps`` steps
    (x̂0 clipping as the folder's scheduler is saved, or forced on/off by ``clip_sample``).

    Unconditional (``DDPMPipeline``) folders give ``n`` samples; text-conditional
    (``IFPipeline``) folders give one sample per prompt, with classifier-free guidance;
    rectified-flow folders (``FlowTextToImage``) too, through the project's DDIM (eq. 4) with
    CFG (eq. 5) over the model's own schedule (:func:`reschrom.sampling.cfg.sample_cfg`).
    """
    from diffusers import DDIMScheduler

    from reschrom.models.builders import load_trained_pipeline

    if os.path.isfile(os.path.join(os.fspath(folder), "reschrom_model.json")):
        return _sample_flow(folder, prompts, steps, guidance_scale, seed, device, batch_size)
    pipe = load_trained_pipeline(folder, device)
    sched_cfg = dict(pipe.scheduler.config)
    pipe.scheduler = DDIMScheduler.from_config(sched_cfg)
    pipe.scheduler.register_to_config(variance_type=sched_cfg.get("variance_type", "fixed_small"))
    if clip_sample is not None:
        pipe.scheduler.register_to_config(clip_sample=bool(clip_sample))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    outs = []
    if prompts is None:
        done = 0
        while done < n:
            b = min(batch_size, n - done)
            x = pipe(batch_size=b, num_inference_steps=steps, generator=gen, output_type="np").images
            outs.append(torch.from_numpy(x).permute(0, 3, 1, 2) * 2 - 1)
            done += b
    else:
        ps = list(prompts)
        for i in range(0, len(ps), batch_size):
            x = pipe(ps[i : i + batch_size], num_inference_steps=steps, guidance_scale=guidance_scale,
                     generator=gen, output_type="pt", clean_caption=False).images
            outs.append(x.float().cpu())
    return torch.cat(outs).clamp(-1, 1)


def _sample_flow(folder: str | os.PathLike, prompts: Sequence[str] | None, steps: int, guidance_scale: float,
                 seed: int, device: str, batch_size: int) -> torch.Tensor:
    """:func:`sample_images` for a rectified-flow text-to-image folder (one sample per prompt)."""
    from reschrom.models.flow import load_flow_t2i
    from reschrom.models.module import ModuleModel
    from reschrom.sampling.cfg import model_noise, sample_cfg

    if prompts is None:
        raise ValueError(f"{folder}: a text-to-image model samples one image per prompt; give prompts")
    model = ModuleModel.from_object("t2i", load_flow_t2i(folder, device=device), device=device)
    ps, outs = list(prompts), []
    for i in range(0, len(ps), batch_size):
        chunk = ps[i : i + batch_size]
        x_T = model_noise(model, len(chunk), int(seed) + i)
        outs.append(sample_cfg(model, [model.encode(chunk)], model.null_condition(len(chunk)),
                               guidance_scale=guidance_scale, num_inference_steps=steps, x_T=x_T).float().cpu())
    return torch.cat(outs).clamp(-1, 1)
