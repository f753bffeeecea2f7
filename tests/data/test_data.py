"""Datasets (issue 3): shapes generator, image folders, Hugging Face datasets, the storage contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reschrom import data as D
from reschrom.io import CorruptFileError
from reschrom.theory.pyramid import downsample

# ------------------------------------------------------------------ shapes


def test_shapes_deterministic_from_seed():
    a, da = D.make_shapes(12, 16, seed=3)
    b, db = D.make_shapes(12, 16, seed=3)
    assert a.dtype == torch.uint8 and a.shape == (12, 3, 16, 16)
    assert torch.equal(a, b) and da.equals(db)
    c, _ = D.make_shapes(12, 16, seed=4)
    assert not torch.equal(a, c)
    # image i depends only on (seed, split, i): a shorter set is a prefix
    p, dp = D.make_shapes(5, 16, seed=3)
    assert torch.equal(p, a[:5]) and list(dp.caption) == list(da.caption[:5])
    t, _ = D.make_shapes(12, 16, seed=3, split="test")
    assert not torch.equal(t, a)


def test_captions_match_factors_and_detector_reads_them():
    x, df = D.make_shapes(200, 32, seed=0)
    for _, r in df.iterrows():
        words = r.caption.split()
        assert r.colour in words and r["shape"] in words and r.background in words
        assert r.texture in words  # "plain", "stripes", "checks" or "dots"
        assert [t for t in D.TEXTURES if t in words] == [r.texture]
        assert D.caption_factors(r.caption) == (r.colour, r["shape"])
    colours, shapes = D.classify_shapes(x)
    assert np.mean(np.array(colours) == df.colour.to_numpy()) >= 0.97
    assert np.mean(np.array(shapes) == df["shape"].to_numpy()) >= 0.97
    # a wrong detector would not pass on random labels
    assert len(set(colours)) == len(D.COLOURS) and len(set(shapes)) == len(D.SHAPES)


def test_texture_is_a_fine_factor_only():
    """With period 2, stripes and checks differ at level 0 but are identical after one D."""
    f = D.ShapeFactors("square", "red", "stripes", "dark", 0.5, 0.5, 0.3)
    g = D.ShapeFactors("square", "red", "checks", "dark", 0.5, 0.5, 0.3)
    a = torch.from_numpy(D.render_shape(f, 32, 2)).float()[None]
    b = torch.from_numpy(D.render_shape(g, 32, 2)).float()[None]
    assert (a - b).abs().max() > 50
    inner = (..., slice(5, 11), slice(5, 11))  # away from the anti-aliased edge
    assert torch.allclose(downsample(a, 1)[inner], downsample(b, 1)[inner], atol=1.0)
    c = D.ShapeFactors("circle", "red", "stripes", "dark", 0.5, 0.5, 0.3)
    cc = torch.from_numpy(D.render_shape(c, 32, 2)).float()[None]
    assert (downsample(a, 1) - downsample(cc, 1)).abs().max() > 50  # shape is coarse


# ------------------------------------------------------------------ image folders


def _write_folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("L", (40, 24), 100).save(d / "a_gray.png")
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent → white
    rgba.save(d / "b_rgba.png")
    wide = np.zeros((16, 48, 3), np.uint8)
    wide[:, 16:32] = (0, 255, 0)  # centre third green, sides black
    Image.fromarray(wide).save(d / "c_wide.png")
    Image.new("P", (16, 16), 3).save(d / "d_palette.png")
    buf = (d / "c_wide.png").read_bytes()
    (d / "e_truncated.png").write_bytes(buf[: len(buf) // 2])
    (d / "notes.txt").write_text("not an image")
    return d


def test_imagefolder_converts_and_skips(tmp_path):
    d = _write_folder(tmp_path)
    x, df, bad = D.load_imagefolder(d, 8, on_bad_image="skip")
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 8, 8)
    assert len(bad) == 1 and bad[0].endswith("e_truncated.png")
    files = list(df.file)
    gray = x[files.index("a_gray.png")]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2]) and int(gray[0, 4, 4]) == 100
    assert int(x[files.index("b_rgba.png")].min()) == 255  # composited on white
    wide = x[files.index("c_wide.png")]
    assert int(wide[1].float().mean()) > 200 and int(wide[0].max()) < 10  # centre crop kept the green
    with pytest.raises(CorruptFileError, match="e_truncated.png"):
        D.load_imagefolder(d, 8, on_bad_image="error")


def test_imagefolder_captions_sidecar(tmp_path):
    d = _write_folder(tmp_path)
    (d / "metadata.jsonl").write_text(
        json.dumps({"file_name": "a_gray.png", "text": "a grey card"}) + "\n"
        + json.dumps({"file_name": "c_wide.png", "text": "a green bar"}) + "\n"
    )
    _, df, _ = D.load_imagefolder(d, 8)
    caps = dict(zip(df.file, df.caption))
    assert caps["a_gray.png"] == "a grey card" and caps["c_wide.png"] == "a green bar" and caps["b_rgba.png"] == ""


def test_bad_inputs_name_the_culprit(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        D.load_imagefolder(tmp_path / "nowhere", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.*no images"):
        D.load_imagefolder(tmp_path / "empty", 8)
    with pytest.raises(ValueError, match="power of two"):
        D.make_shapes(2, 24, 0)
    with pytest.raises(ValueError, match="data.path"):
        D.build_split({"kind": "imagefolder", "resolution": 8, "num_train": 2, "num_test": 1}, "train", 0)
    bad = tmp_path / "level_0.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CorruptFileError, match="level_0.safetensors"):
        D.load_level(bad)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        D.load_level(tmp_path / "missing.safetensors")


def test_hf_imagefolder(tmp_path):
    d = _write_folder(tmp_path)
    (d / "e_truncated.png").unlink()
    (d / "metadata.jsonl").write_text(
        "\n".join(json.dumps({"file_name": f, "text": f"caption {f}"}) for f in
                  ["a_gray.png", "b_rgba.png", "c_wide.png", "d_palette.png"]) + "\n"
    )
    (d / "notes.txt").unlink()
    x, df = D.load_hf("imagefolder", "train", 8, data_dir=str(d), cache_dir=str(tmp_path / "cache"))
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.uint8
    assert sorted(df.caption) == sorted(f"caption {f}" for f in ["a_gray.png", "b_rgba.png", "c_wide.png", "d_palette.png"])


# ------------------------------------------------------------------ storage contract


def test_prepare_and_downsample_contract(tmp_path):
    from safetensors.torch import load_file

    cfg = {"kind": "shapes", "resolution": 16, "num_train": 10, "num_test": 4, "texture_period": 2}
    outs = [tmp_path / "train/level_0.safetensors", tmp_path / "test/level_0.safetensors",
            tmp_path / "train/captions.parquet", tmp_path / "test/captions.parquet"]
    D.prepare_dataset(cfg, 0, outs)
    raw = load_file(str(outs[0]))["images"]
    assert raw.dtype == torch.uint8 and raw.shape == (10, 3, 16, 16)
    caps = D.load_captions(outs[2])
    assert list(caps["index"]) == list(range(10)) and {"caption", "shape", "colour", "texture"} <= set(caps.columns)
    D.downsample_level(outs[0], 2, tmp_path / "train/level_2.safetensors")
    lv = load_file(str(tmp_path / "train/level_2.safetensors"))["images"]
    assert lv.dtype == torch.float16 and lv.shape == (10, 3, 4, 4)
    x0 = D.load_level(outs[0])
    assert x0.dtype == torch.float32 and x0.min() >= -1 and x0.max() <= 1
    torch.testing.assert_close(D.load_level(tmp_path / "train/level_2.safetensors"), downsample(x0, 2), atol=2e-3, rtol=0)


def test_imagefolder_split(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(d / f"{i}.png")
    cfg = {"kind": "imagefolder", "path": str(d), "resolution": 8, "num_train": 4, "num_test": 2}
    tr, dtr, _ = D.build_split(cfg, "train", 0)
    te, dte, _ = D.build_split(cfg, "test", 0)
    assert len(tr) == 4 and len(te) == 2
    assert not set(dtr.file) & set(dte.file)
    assert list(dtr["index"]) == [0, 1, 2, 3]
