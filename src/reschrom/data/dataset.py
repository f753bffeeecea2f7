"""Datasets on disk (paper §4.2): an image folder, a Hugging Face dataset or the shapes set, split,
stored and read back with their pyramid levels.

Storage contract (other modules read it):

- ``results/data/{dataset}/{split}/level_0.safetensors``: key ``images``, uint8, (N, 3, R, R);
- ``results/data/{dataset}/{split}/level_{m}.safetensors`` (m ≥ 1): D^m of level 0 by average
  pooling (:func:`reschrom.theory.pyramid.downsample`), float16 in [-1, 1], key ``images``;
- ``results/data/{dataset}/{split}/captions.parquet``: columns ``index``, ``caption`` (and, for
  shapes, the generator's factors ``shape``, ``colour``, ``texture``, ``background``, ``cx``,
  ``cy``, ``size``).

:func:`load_level` reads either kind back as float32 in [-1, 1].
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from reschrom.data.shapes import check_resolution, make_shapes
from reschrom.io import CorruptFileError, atomic_path, read_parquet, write_parquet

# --------------------------------------------------------------------------------------
# image folders and Hugging Face datasets
# --------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")


def to_rgb_square(img: Any, resolution: int) -> np.ndarray:
    """A PIL image → uint8 (3, R, R): RGBA composited on white, grey/palette to RGB,
    centre-cropped to a square, resized with a Lanczos filter (antialiased)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, rgba)
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    if s != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); errors name the folder."""
    p = Path(folder)
    if not p.exists():
        raise FileNotFoundError(f"data.path: image folder {p} does not exist")
    if not p.is_dir():
        raise NotADirectoryError(f"data.path: {p} is not a folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"data.path: image folder {p} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def read_caption_sidecar(folder: Path, captions: str | os.PathLike | None) -> dict[str, str]:
    """Captions by file name (relative to ``folder``) from a CSV or JSONL sidecar, if any.

    Without an explicit path, ``metadata.jsonl``/``metadata.csv``/``captions.csv``/
    ``captions.jsonl`` in the folder are used (the first found). Columns: ``file_name`` (or
    ``file``, ``image``, ``path``) and ``text`` (or ``caption``).
    """
    if captions is None:
        for name in ("metadata.jsonl", "metadata.csv", "captions.jsonl", "captions.csv"):
            if (folder / name).is_file():
                captions = folder / name
                break
        else:
            return {}
    cp = Path(captions)
    if not cp.is_file():
        raise FileNotFoundError(f"data.captions: caption file {cp} does not exist")
    try:
        df = pd.read_json(cp, lines=True) if cp.suffix == ".jsonl" else pd.read_csv(cp)
    except ValueError as e:
        raise ValueError(f"data.captions: cannot read {cp}: {str(e).splitlines()[0]}") from None
    fcol = next((c for c in ("file_name", "file", "image", "path", "filename") if c in df.columns), None)
    tcol = next((c for c in ("text", "caption", "prompt") if c in df.columns), None)
    if fcol is None or tcol is None:
        raise ValueError(f"data.captions: {cp} needs a file_name and a text/caption column, has {list(df.columns)}")
    return {str(Path(f)): str(t) for f, t in zip(df[fcol], df[tcol])}


def load_imagefolder(
    folder: str | os.PathLike,
    resolution: int,
    on_bad_image: str = "skip",
    captions: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[torch.Tensor, pd.DataFrame, list[str]]:
    """Read every image under ``folder`` as uint8 (N, 3, R, R).

    Returns (images, table with ``index``, ``caption``, ``file``, skipped file names).
    Unreadable or truncated files are skipped and counted (``on_bad_image="skip"``) or stop
    the run with an error naming the file (``"error"``).
    """
    from PIL import Image, UnidentifiedImageError

    check_resolution(resolution, "data.resolution")
    if on_bad_image not in ("skip", "error"):
        raise ValueError(f"data.on_bad_image: {on_bad_image!r} is not allowed; allowed values: skip, error")
    root = Path(folder)
    files = list_images(root)
    caps = read_caption_sidecar(root, captions)
    imgs, rows, bad = [], [], []
    for f in files:
        if limit is not None and len(imgs) >= limit:
            break
        try:
            with Image.open(f) as im:
                im.load()
                arr = to_rgb_square(im, resolution)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            if on_bad_image == "error":
                raise CorruptFileError(f"unreadable image {f}: {e}") from None
            bad.append(str(f))
            continue
        rel = str(f.relative_to(root))
        imgs.append(arr)
        rows.append({"index": len(rows), "caption": caps.get(rel, caps.get(f.name, "")), "file": rel})
    if not imgs:
        raise ValueError(f"data.path: no readable image in {root} ({len(bad)} unreadable)")
    return torch.from_numpy(np.stack(imgs)), pd.DataFrame(rows), bad


def load_hf(
    name: str,
    split: str,
    resolution: int,
    data_dir: str | None = None,
    image_column: str = "image",
    caption_column: str | None = "text",
    limit: int | None = None,
    cache_dir: str | None = None,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """A Hugging Face dataset via ``datasets.load_dataset(name, split=..., data_dir=...)``.

    ``name`` is a hub id or a local path/builder (``"imagefolder"`` with ``data_dir``); the
    images are converted like :func:`to_rgb_square`; captions come from ``caption_column``
    when present, else empty.
    """
    import datasets

    check_resolution(resolution, "data.resolution")
    kw: dict[str, Any] = {"split": split}
    if cache_dir:
        kw["cache_dir"] = cache_dir
    if data_dir:
        if not Path(data_dir).exists():
            raise FileNotFoundError(f"data.hf.data_dir: {data_dir} does not exist")
        kw["data_dir"] = data_dir
    ds = datasets.load_dataset(name, **kw)
    if image_column not in ds.column_names:
        raise ValueError(f"data.hf.image_column: {image_column!r} is not a column of {name}; columns: {ds.column_names}")
    n = len(ds) if limit is None else min(limit, len(ds))
    imgs, rows = [], []
    for i in range(n):
        ex = ds[i]
        imgs.append(to_rgb_square(ex[image_column], resolution))
        cap = str(ex[caption_column]) if caption_column and caption_column in ex and ex[caption_column] is not None else ""
        rows.append({"index": i, "caption": cap})
    if not imgs:
        raise ValueError(f"data.hf: dataset {name} split {split} is empty")
    return torch.from_numpy(np.stack(imgs)), pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# the storage contract
# --------------------------------------------------------------------------------------


def save_level(images: torch.Tensor, path: str | os.PathLike) -> None:
    """Write one level atomically: uint8 as is (level 0), float → float16 in [-1, 1]."""
    from safetensors.torch import save_file

    x = images.detach().cpu().contiguous()
    if x.dtype != torch.uint8:
        x = x.clamp(-1, 1).to(torch.float16).contiguous()
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({"images": x}, str(tmp))


def load_level(path: str | os.PathLike) -> torch.Tensor:
    """Read a stored level as float32 in [-1, 1], shape (N, 3, H, W); errors name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"dataset level not found: {p}")
    try:
        d = load_file(str(p))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CorruptFileError(f"corrupt dataset level {p}: {str(e).splitlines()[0]}") from None
    if "images" not in d:
        raise CorruptFileError(f"corrupt dataset level {p}: no 'images' tensor (keys: {sorted(d)})")
    x = d["images"]
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != x.shape[-2]:
        raise CorruptFileError(f"corrupt dataset level {p}: expected (N, 3, H, H), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 127.5 - 1.0
    x = x.float()
    if not torch.isfinite(x).all() or x.abs().max() > 1.0 + 1e-3:
        raise CorruptFileError(f"corrupt dataset level {p}: values outside [-1, 1] or not finite")
    return x


def downsample_level(level0: str | os.PathLike, m: int, out: str | os.PathLike, kernel: int = 2) -> None:
    """Write D^m of a stored level 0 (average pooling, :func:`reschrom.theory.pyramid.downsample`)."""
    from reschrom.theory.pyramid import downsample

    x = load_level(level0)
    if x.shape[-1] % (kernel**m):
        raise ValueError(f"level {m}: resolution {x.shape[-1]} of {level0} is not divisible by {kernel}^{m}")
    save_level(downsample(x, int(m), kernel), out)


def load_captions(path: str | os.PathLike) -> pd.DataFrame:
    """The captions table of a split (columns ``index``, ``caption``, …)."""
    return read_parquet(path)


def build_split(cfg: Mapping[str, Any], split: str, seed: int) -> tuple[torch.Tensor, pd.DataFrame, dict[str, Any]]:
    """Images and captions of one split of the configured dataset (``data`` config block)."""
    kind = cfg.get("kind", "shapes")
    res = int(cfg["resolution"])
    n = int(cfg["num_train"] if split == "train" else cfg["num_test"])
    info: dict[str, Any] = {"kind": kind, "split": split}
    if kind == "shapes":
        x, df = make_shapes(n, res, seed, split, int(cfg.get("texture_period", 4)))
        return x, df, info
    if kind == "imagefolder":
        if not cfg.get("path"):
            raise ValueError("data.path: required for data.kind imagefolder")
        x, df, bad = load_imagefolder(
            cfg["path"], res, cfg.get("on_bad_image", "skip"), cfg.get("captions"),
            limit=int(cfg["num_train"]) + int(cfg["num_test"]),
        )
        info["skipped"] = bad
        return _split_rows(x, df, split, int(cfg["num_test"]), seed) + (info,)
    if kind == "hf":
        hf = dict(cfg.get("hf", {}))
        if not hf.get("name"):
            raise ValueError("data.hf.name: required for data.kind hf")
        sp = hf.get("split_train", "train") if split == "train" else hf.get("split_test")
        if sp:
            x, df = load_hf(hf["name"], sp, res, hf.get("data_dir"), hf.get("image_column", "image"),
                            hf.get("caption_column", "text"), limit=n)
            return x, df, info
        x, df = load_hf(hf["name"], hf.get("split_train", "train"), res, hf.get("data_dir"),
                        hf.get("image_column", "image"), hf.get("caption_column", "text"),
                        limit=int(cfg["num_train"]) + int(cfg["num_test"]))
        return _split_rows(x, df, split, int(cfg["num_test"]), seed) + (info,)
    raise ValueError(f"data.kind: {kind!r} is not allowed; allowed values: shapes, imagefolder, hf")


def _split_rows(x: torch.Tensor, df: pd.DataFrame, split: str, n_test: int, seed: int) -> tuple[torch.Tensor, pd.DataFrame]:
    """A deterministic train/test split: a seeded permutation, the first ``n_test`` are test."""
    n = len(df)
    if n_test >= n:
        raise ValueError(f"data.num_test: {n_test} test images leave none of the {n} images for training")
    perm = np.random.default_rng(int(seed)).permutation(n)
    idx = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
    out = df.iloc[idx].reset_index(drop=True).rename(columns={"index": "source_index"})
    out.insert(0, "index", np.arange(len(out)))
    return x[torch.as_tensor(idx)], out


def prepare_dataset(cfg: Mapping[str, Any], seed: int, outputs: Sequence[str | os.PathLike]) -> None:
    """Write train and test level 0 and their captions: ``outputs`` = (train level_0,
    test level_0, train captions, test captions)."""
    import sys

    train0, test0, train_cap, test_cap = outputs
    for split, img_path, cap_path in (("train", train0, train_cap), ("test", test0, test_cap)):
        x, df, info = build_split(cfg, split, seed)
        if info.get("skipped"):
            print(f"{split}: skipped {len(info['skipped'])} unreadable image(s): "
                  + ", ".join(info["skipped"][:10]), file=sys.stderr)
        print(f"{split}: {len(df)} images of {tuple(x.shape[1:])}", file=sys.stderr)
        save_level(x, img_path)
        write_parquet(df, cap_path)
