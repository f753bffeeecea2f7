"""Reading and writing the pipeline's artifacts: Parquet tables, safetensors (models, image batches), PNGs.

Every write is atomic (a temporary file beside the target, then ``os.replace``), so an
interrupted job never leaves a half-written file under ``results/``. Every read names the
file in its error when the file is missing or corrupt.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class CorruptFileError(ValueError):
    """A file exists but cannot be read; the message names it."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files: give the result the permissions a plain open() would
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_parquet(df: pd.DataFrame | pa.Table, path: str | os.PathLike) -> None:
    """Write a table atomically with pyarrow (zstd compressed)."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet table; a missing or corrupt file raises an error that names it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Parquet file not found: {p}")
    try:
        return pq.read_table(p, columns=columns).to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise CorruptFileError(f"corrupt Parquet file {p}: {e}") from None


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def check_model_folder(folder: str | os.PathLike, subfolders: tuple[str, ...] = ()) -> None:
    """Check a local ``save_pretrained`` folder before loading it: the required subfolders and
    config files exist and every ``*.safetensors`` file has a readable header. Errors name the
    file, so a truncated or garbled weight file is never loaded silently or reported vaguely."""
    from safetensors import safe_open

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"model folder not found: {root}")
    for sub in subfolders:
        d = root / sub
        if not d.is_dir():
            raise FileNotFoundError(f"model folder {root} is missing {sub}/")
        if not any((d / n).is_file() for n in ("config.json", "scheduler_config.json", "tokenizer_config.json")):
            raise FileNotFoundError(f"model folder {root} is missing a config file in {sub}/")
    for f in sorted(root.rglob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():
                    fh.get_slice(key)
        except Exception as e:
            raise CorruptFileError(f"corrupt weights file {f}: {str(e).splitlines()[0]}") from None


def read_images(path: str | os.PathLike, key: str = "images", limit: int | None = None) -> np.ndarray:
    """Images (N, C, H, W) from a safetensors file as float32 in the model range: uint8 is mapped
    x/127.5 - 1, float stays as is (``reschrom.sampling.upscale.load_images`` as a tensor): NumPy only."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"samples/data file not found: {p}")
    with safe_open(str(p), framework="np") as f:
        if key not in f.keys():
            raise KeyError(f"{p} has no tensor {key!r}; it has {', '.join(f.keys())}")
        x = f.get_tensor(key)
    if limit is not None:
        x = x[:limit]
    return x.astype(np.float32) / 127.5 - 1.0 if x.dtype == np.uint8 else x.astype(np.float32)


def image_grid(x: np.ndarray, ncol: int, pad: int = 1) -> np.ndarray:
    """The one image mosaic: a (rows·H, ncol·W, C) uint8 grid of a batch (N, C, H, W) in [-1, 1]
    (a NumPy array or a CPU tensor), rounded to 8 bits, white padding of ``pad`` pixels
    between images. The upscaling grids (``reschrom.sampling.upscale.save_grid``) and Fig. 6
    (``reschrom.plots.upscale``) draw with it."""
    imgs = np.round((np.clip(np.asarray(x, dtype=np.float32), -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)
    n, h, w, c = imgs.shape
    nrow = max(1, math.ceil(n / ncol))
    grid = np.full((nrow * (h + pad) - pad, ncol * (w + pad) - pad, c), 255, np.uint8)
    for i in range(n):
        r, cc = divmod(i, ncol)
        grid[r * (h + pad) : r * (h + pad) + h, cc * (w + pad) : cc * (w + pad) + w] = imgs[i]
    return grid
