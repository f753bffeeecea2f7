"""What is trained and how it is saved (:class:`ModelBundle`), and the checkpoints a run resumes from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from reschrom.models import flow
from reschrom.training.spec import TrainSpec

# --------------------------------------------------------------------------------------
# the model bundle: what is trained, how it is called, how it is saved
# --------------------------------------------------------------------------------------


class ModelBundle:
    """The trainable modules of one job, their forward call and their pipeline folder."""

    def __init__(self, spec: TrainSpec, sample_size: int, captions: Sequence[str] | None, device: torch.device):
        from reschrom.models import builders as models

        self.spec = spec
        self.device = device
        self.scheduler = models.build_noise_scheduler(spec.schedule_name, spec.schedule_spec)
        torch.manual_seed(spec.seed)  # module initialisation draws from the global generator
        if spec.kind == "t2i":
            if captions is None:
                raise ValueError("t2i training needs captions (captions.parquet of the split)")
            self.tokenizer = models.build_word_tokenizer(list(captions) + [""])
            if spec.flow:
                self.pipe = models.build_flow_t2i(self.tokenizer, spec.model_cfg, sample_size)
            else:
                self.scheduler.register_to_config(prediction_type=spec.objective,
                                                  clip_sample=bool(spec.model_cfg.get("clip_sample", True)))
                self.pipe = models.build_t2i_pipeline(self.tokenizer, spec.model_cfg, self.scheduler, sample_size)
            self.modules = {"unet": self.pipe.unet, "text_encoder": self.pipe.text_encoder}
        else:
            unet = models.build_unet(spec.model_cfg, sample_size)
            self.pipe = models.build_ddpm_pipeline(unet, self.scheduler)
            self.modules = {"unet": unet}
        for mod in self.modules.values():
            mod.to(device)
            mod.train()
        self.named = [(f"{k}.{n}", p) for k, mod in self.modules.items() for n, p in mod.named_parameters()]
        self.params = [p for _, p in self.named]

    def encode(self, captions: Sequence[str]) -> torch.Tensor:
        """Token ids padded to 77 exactly as ``IFPipeline.encode_prompt`` does, and the T5 states."""
        return flow.encode_prompts(self.tokenizer, self.modules["text_encoder"], captions)


def digest_data(x: torch.Tensor, captions: Sequence[str] | None) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(x.shape)).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    if captions is not None:
        h.update("\n".join(captions).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


def checkpoint_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / "state.json").is_file())


def save_checkpoint(root: Path, step: int, bundle: ModelBundle, ema: list[torch.Tensor], opt: torch.optim.Optimizer,
                    gen: torch.Generator, log_rows: list[dict], fingerprint: str, keep: int) -> Path:
    """Write ``root/step_XXXXXXXX/`` atomically (a temporary folder renamed at the end)."""
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({n: p.detach().cpu().contiguous() for n, p in bundle.named}, str(tmp / "model.safetensors"))
    save_file({n: e.detach().cpu().contiguous() for (n, _), e in zip(bundle.named, ema)}, str(tmp / "ema.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    rng = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    pd.DataFrame(log_rows).to_parquet(tmp / "log.parquet")
    (tmp / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest_checkpoint(root: Path, fingerprint: str) -> Path | None:
    """The newest complete checkpoint of this exact model and data, or None.

    Checkpoints of another configuration (different fingerprint) are reported and ignored.
    """
    for d in reversed(checkpoint_dirs(root)):
        try:
            state = json.loads((d / "state.json").read_text())
        except (OSError, json.JSONDecodeError):
            print(f"checkpoint {d}: unreadable state.json, ignored", file=sys.stderr)
            continue
        if state.get("fingerprint") != fingerprint:
            print(f"checkpoint {d}: made with another configuration, ignored", file=sys.stderr)
            continue
        return d
    return None


def restore_checkpoint(d: Path, bundle: ModelBundle, ema: list[torch.Tensor], opt: torch.optim.Optimizer, gen: torch.Generator) -> tuple[int, list[dict]]:
    from safetensors.torch import load_file

    try:
        weights = load_file(str(d / "model.safetensors"))
        ema_w = load_file(str(d / "ema.safetensors"))
        opt_state = torch.load(d / "optimizer.pt", weights_only=True, map_location="cpu")
        rng = torch.load(d / "rng.pt", weights_only=True, map_location="cpu")
        log = pd.read_parquet(d / "log.parquet").to_dict("records")
        step = int(json.loads((d / "state.json").read_text())["step"])
    except Exception as e:
        raise RuntimeError(f"corrupt checkpoint {d}: {str(e).splitlines()[0]}; delete it to restart") from None
    with torch.no_grad():
        for (n, p), e in zip(bundle.named, ema):
            p.copy_(weights[n].to(p.device))
            e.copy_(ema_w[n].to(e.device))
    opt.load_state_dict(opt_state)
    gen.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return step, log
