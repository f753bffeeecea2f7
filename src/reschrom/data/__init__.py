"""Datasets (paper §4.2): the embedded shapes set and image folders or Hugging Face datasets, split
and stored with their pyramid levels.

* :mod:`~reschrom.data.shapes` — the shapes generator, its captions and the detector that reads
  colour and shape back from an image;
* :mod:`~reschrom.data.dataset` — image folders, Hugging Face datasets, splits, the stored levels
  (``results/data/{dataset}/{split}/level_{m}.safetensors``); **add a dataset kind here**
  (:func:`~reschrom.data.dataset.build_split`, and its ``data.kind`` in the config schema).

May import: :mod:`reschrom.io`, :mod:`reschrom.theory`.

Every public name of the submodules is also importable from the package itself
(``reschrom.data.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'IMAGE_EXTENSIONS': 'dataset',
    'build_split': 'dataset',
    'downsample_level': 'dataset',
    'list_images': 'dataset',
    'load_captions': 'dataset',
    'load_hf': 'dataset',
    'load_imagefolder': 'dataset',
    'load_level': 'dataset',
    'prepare_dataset': 'dataset',
    'read_caption_sidecar': 'dataset',
    'save_level': 'dataset',
    'to_rgb_square': 'dataset',
    'BACKGROUNDS': 'shapes',
    'COLOURS': 'shapes',
    'SHAPES': 'shapes',
    'ShapeFactors': 'shapes',
    'TEXTURES': 'shapes',
    'TEXTURE_DIM': 'shapes',
    'caption_factors': 'shapes',
    'check_resolution': 'shapes',
    'classify_shapes': 'shapes',
    'make_shapes': 'shapes',
    'render_shape': 'shapes',
    'sample_factors': 'shapes',
    'shape_caption': 'shapes',
    'shape_mask': 'shapes',
    'texture_pattern': 'shapes',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
