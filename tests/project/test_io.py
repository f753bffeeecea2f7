"""Atomic writes and named errors of reschrom.io."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from reschrom.io import CorruptFileError, atomic_path, read_parquet, write_parquet


def test_atomic_write_roundtrip_and_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "a" / "t.parquet"
        write_parquet(pd.DataFrame({"x": [1, 2]}), out)
    finally:
        os.umask(old)
    assert read_parquet(out)["x"].tolist() == [1, 2]
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["t.parquet"]


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "t.parquet"
    write_parquet(pd.DataFrame({"x": [1]}), out)
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert read_parquet(out)["x"].tolist() == [1]  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_corrupt_and_missing_parquet_are_named(tmp_path):
    bad = tmp_path / "bad.parquet"
    write_parquet(pd.DataFrame({"x": range(100)}), bad)
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(CorruptFileError, match="bad.parquet"):
        read_parquet(bad)
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_parquet(tmp_path / "nope.parquet")


def _tiny_ddpm_folder(path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(path)
    return path


def test_garbled_or_missing_model_files_are_named(tmp_path):
    from reschrom.io import check_model_folder
    from reschrom.sampling.upscale import load_model

    folder = _tiny_ddpm_folder(tmp_path / "m")
    load_model(folder)  # intact: loads
    weights = next((folder / "unet").glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CorruptFileError, match=weights.name):
        load_model(folder)
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}" + data[100:])  # garbled header
    with pytest.raises(CorruptFileError, match=weights.name):
        check_model_folder(folder)
    weights.unlink()
    (folder / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="scheduler"):
        load_model(folder)


def test_image_grid_is_one_mosaic_for_arrays_and_tensors():
    """reschrom.io.image_grid, the one grid of the upscaling PNGs and Fig. 6: [-1, 1] → 8 bits,
    row-major, white padding, a NumPy array and a CPU tensor alike."""
    import numpy as np
    import torch

    from reschrom.io import image_grid

    x = np.stack([np.full((1, 2, 2), v, np.float32) for v in (-1.0, 0.0, 2.0)])  # 2.0 is clipped to 1
    g = image_grid(x, ncol=2, pad=1)
    assert g.dtype == np.uint8 and g.shape == (5, 5, 1)
    assert (g[0:2, 0:2] == 0).all() and (g[0:2, 3:5] == 128).all() and (g[3:5, 0:2] == 255).all()
    assert (g[2, :] == 255).all() and (g[:, 2] == 255).all() and (g[3:5, 3:5] == 255).all()  # padding, empty cell
    np.testing.assert_array_equal(image_grid(torch.from_numpy(x), ncol=2, pad=1), g)
    assert image_grid(np.zeros((4, 3, 2, 3), np.float32), ncol=4, pad=0).shape == (2, 12, 3)
