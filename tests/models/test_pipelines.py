"""Offline tiny diffusers pipelines (tests/helpers/builders.py): the one tokenizer, save/load round trip."""

from __future__ import annotations

import pytest
import torch

from builders import build_tiny_if_pipeline, build_tiny_sd3_pipeline, build_tiny_sd_pipeline
from reschrom.models.builders import build_word_tokenizer
from reschrom.models.pipelines import load_pipeline, resolve_dtype


def test_word_tokenizer_pads_and_ends_with_eos():
    tok = build_word_tokenizer(["a cute corgi", "a house"])
    enc = tok("A CUTE corgi zebra", padding="max_length", max_length=8, truncation=True, return_tensors="pt")
    ids = enc.input_ids[0].tolist()
    vocab = tok.get_vocab()
    assert ids[:4] == [vocab["a"], vocab["cute"], vocab["corgi"], vocab["<unk>"]]
    assert ids[4] == tok.eos_token_id and ids[5:] == [tok.pad_token_id] * 3
    assert enc.attention_mask[0].tolist() == [1] * 5 + [0] * 3


@pytest.fixture(scope="module")
def tiny_if():
    return build_tiny_if_pipeline(resolution=8, seed=0)


def _run_if(pipe, seed=0):
    return pipe(
        "a cute corgi",
        num_inference_steps=3,
        guidance_scale=4.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        clean_caption=False,
    ).images


def test_tiny_if_runs_and_is_if_like(tiny_if):
    img = _run_if(tiny_if)
    assert img.shape == (1, 3, 8, 8) and torch.isfinite(img).all()
    assert tiny_if.unet.config.out_channels == 2 * tiny_if.unet.config.in_channels
    assert tiny_if.scheduler.config.variance_type == "learned_range"
    assert torch.equal(img, _run_if(tiny_if))  # deterministic for a seed


def test_tiny_if_is_deterministic_in_its_seed():
    a = build_tiny_if_pipeline(resolution=8, seed=3)
    b = build_tiny_if_pipeline(resolution=8, seed=3)
    for (na, pa), (_, pb) in zip(a.unet.named_parameters(), b.unet.named_parameters()):
        assert torch.equal(pa, pb), na


def test_save_and_load_pipeline_round_trip(tiny_if, tmp_path):
    tiny_if.save_pretrained(tmp_path / "t2i")
    loaded = load_pipeline(tmp_path / "t2i", device="cpu", dtype="float32")
    assert type(loaded).__name__ == "IFPipeline"
    assert torch.equal(_run_if(tiny_if), _run_if(loaded))


def test_load_pipeline_missing_local_folder_names_it(tmp_path):
    with pytest.raises((FileNotFoundError, OSError, EnvironmentError), match="nope"):
        load_pipeline(str(tmp_path / "nope"), device="cpu")


def test_tiny_sd_runs():
    pipe = build_tiny_sd_pipeline(resolution=16, seed=0)
    out = pipe("a cute corgi", num_inference_steps=2, guidance_scale=3.0,
               generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()



def test_tiny_sd3_runs_and_round_trips(tmp_path):
    """SD3 layout without T5 saves and loads like any pipeline folder (diffusers needs
    ``text_encoder_3=None, tokenizer_3=None`` to load a folder saved without them)."""
    pipe = build_tiny_sd3_pipeline(resolution=16, seed=0)

    def run(p):
        return p("a cute corgi", num_inference_steps=2, guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(0), output_type="pt").images

    out = run(pipe)
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()
    pipe.save_pretrained(tmp_path / "sd3")
    loaded = load_pipeline(tmp_path / "sd3", device="cpu", dtype="float32", text_encoder_3=None, tokenizer_3=None)
    assert type(loaded).__name__ == "StableDiffusion3Pipeline" and loaded.text_encoder_3 is None
    assert torch.equal(out, run(loaded))


def test_resolve_dtype():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="allowed"):
        resolve_dtype("int8", torch.device("cpu"))
