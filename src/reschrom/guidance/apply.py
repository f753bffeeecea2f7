"""Where a guidance rule runs: classic diffusers pipelines, the project's DDIM, a recorder.

* :class:`GuidedPipeline` — any CFG pipeline of the adapter layer
  (:class:`reschrom.models.adapters.PipelineAdapter`: IF, SD ε/v, SD3-style flow transformers, the toy
  model, the oracle) keeps its own loop. A forward hook on the denoiser (the pattern of
  :class:`reschrom.compose.composer.PromptComposer`) reads the batched [uncond, cond] output, applies the
  rule and writes back the conditional half as ε_u + (ε̃ − ε_u)/s, so that the pipeline's own
  line ε_u + s(ε_c − ε_u) yields the rule's ε̃ (up to rounding). The rule acts on the raw
  output: ε for ε models; v or a flow velocity u otherwise, which are ε up to a per-sample
  scale and an offset shared by both halves, so band rules (linear) are exactly the same rule
  on ε; APG's norm threshold is then in output units. Learned-variance channels (IF) keep the
  conditional prediction. True-CFG loops (Flux, Qwen-Image, Lumina 2, CogView4: one call per
  condition on the same x_t) are paired as the probe pairs them, by the identity of the x_t
  tensor; the rule runs on the unpacked (B, C, H, W) grid, and the step's second output is
  rewritten so that the loop's own line yields ε̃ (a loop that rescales the combined prediction,
  Qwen-Image's norm rescale, rescales ε̃ as it rescales CFG's). No extra denoiser evaluation.
* :func:`denoiser_guide` — the ``guide`` argument of :func:`reschrom.sampling.cfg.sample_cfg`
  (``kind: module`` models and the flow-matching toy).
* :class:`RecordingRule` — wraps a rule and records the band energies (eq. 19) of the applied
  guidance term ε̃ − ε_u per step: the measured chromatography of the guidance itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from reschrom.models.adapters import PipelineAdapter
from reschrom.models.families import output_tensor, replace_output


@dataclass
class RecordingRule:
    """``rule`` plus, per call, (step, t_frac, band energies of ε̃ − ε_u summed over the batch)."""

    rule: Any
    kernel: int = 2
    records: list[tuple[int, float, torch.Tensor]] = field(default_factory=list)

    def __call__(self, pred_cond, pred_uncond, t_frac, step=None, num_steps=None, timestep=None):
        from reschrom.theory.pyramid import band_energies

        pred = self.rule(pred_cond, pred_uncond, t_frac, step=step, num_steps=num_steps, timestep=timestep)
        e = band_energies((pred - pred_uncond).double(), self.kernel).sum(0)
        self.records.append((len(self.records) if step is None else int(step), float(t_frac), e.cpu()))
        return pred


def denoiser_guide(rule: Any, num_steps: int):
    """``sample_cfg(..., guide=denoiser_guide(rule, n))``: the rule at the sampler's t_frac."""

    def guide(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, t_frac: float, step: int) -> torch.Tensor:
        return rule(eps_cond, eps_uncond, t_frac, step=step, num_steps=num_steps, timestep=t_frac)

    return guide


@dataclass
class GuidedPipeline:
    """A guidance rule on an unmodified diffusers CFG pipeline (module docstring).

    Call it like the pipeline: ``GuidedPipeline(pipe, rule)(prompt=…, num_inference_steps=…,
    generator=…)``. ``guidance_scale`` (``true_cfg_scale`` for Flux and Qwen-Image, which also
    need their ``negative_prompt``) is set to ``carrier`` (any value > 1: the pipeline must run
    its [uncond, cond] batch or its two calls; the hook divides by it). ``t_frac`` of the rule is the
    adapter's (the schedule's own time fraction of the denoiser's timestep).
    """

    pipe: Any
    rule: Any
    carrier: float = 2.0

    def __post_init__(self) -> None:
        if not self.carrier > 1.0:
            raise ValueError(f"carrier guidance scale must be > 1, got {self.carrier}")
        self.adapter = PipelineAdapter.for_pipeline(self.pipe)
        self._step = 0
        self._num_steps: int | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._perm: dict[tuple[int, ...], torch.Tensor] = {}

    def _apply(self, e_c: torch.Tensor, e_u: torch.Tensor, t: Any) -> torch.Tensor:
        t_frac = float(self.adapter.t_frac(t).reshape(-1)[0])
        pred = self.rule(e_c, e_u, t_frac, step=self._step, num_steps=self._num_steps, timestep=t)
        self._step += 1
        return pred

    def _pack(self, grid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The inverse of the adapter's unpacking (a permutation of the entries): ``grid`` (B, C,
        H, W) back to the packed layout of ``like`` (B, seq, 4·C); other tensors as they are."""
        if like.ndim != 3:
            return grid
        key = tuple(like.shape[1:])
        perm = self._perm.get(key)
        if perm is None:
            idx = torch.arange(like[0].numel(), dtype=torch.float64).reshape(1, *key)
            perm = self._perm[key] = self.adapter.unpack(idx).reshape(-1).round().long()
        out = torch.empty(like.shape[0], like[0].numel(), dtype=grid.dtype, device=grid.device)
        out[:, perm.to(grid.device)] = grid.reshape(like.shape[0], -1)
        return out.reshape(like.shape)

    def _hook_two_call(self, args, kwargs, output, out):
        a = self.adapter
        sample = a.sample(args, kwargs)
        pend = self._pending
        if pend is None or pend[0] is not sample:  # the step's first call: keep its output
            if pend is not None:  # the previous x_t got one call: that step did no CFG
                self._pending = None
                raise ValueError(f"GuidedPipeline: {a.cfg_off(out.shape[0])}")
            self._pending = (sample, out)
            return output
        self._pending = None
        out_c, out_u = (pend[1], out) if a.cond_first else (out, pend[1])
        pred = self._pack(self._apply(a.unpack(out_c), a.unpack(out_u), a.timestep(args, kwargs)), out)
        s = self.carrier
        # the loop computes ε_u + s(ε_c − ε_u) from both outputs; rewrite the second one
        new = (pred - s * out_c) / (1.0 - s) if a.cond_first else out_u + (pred - out_u) / s
        return replace_output(output, new.to(out.dtype))

    def _hook(self, module, args, kwargs, output):
        a = self.adapter
        if not a.is_guidance_call(args, kwargs):
            return output
        out = output_tensor(output)
        if a.two_call:
            return self._hook_two_call(args, kwargs, output, out)
        B = out.shape[0]
        off = a.cfg_off(B)
        if off is not None:
            raise ValueError(f"GuidedPipeline: {off}")
        N, C = B // 2, a.sample(args, kwargs).shape[1]
        e_u, e_c = out[:N, :C], out[N:, :C]
        pred = self._apply(e_c, e_u, a.timestep(args, kwargs))
        new_c = e_u + (pred - e_u) / self.carrier
        cond = torch.cat([new_c.to(out.dtype), out[N:, C:]], dim=1)
        return replace_output(output, torch.cat([out[:N], cond], dim=0))

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        h = self.adapter.denoiser.register_forward_hook(self._hook, with_kwargs=True)
        try:
            yield
        finally:
            h.remove()

    def __call__(self, **kwargs: Any) -> Any:
        kwargs[self.adapter.cfg_scale_arg] = self.carrier  # true_cfg_scale for Flux and Qwen-Image
        self._step, self._pending = 0, None
        self._num_steps = kwargs.get("num_inference_steps")
        with torch.no_grad(), self.hooks(), self.adapter.tracking_geometry():
            return self.pipe(**kwargs)
