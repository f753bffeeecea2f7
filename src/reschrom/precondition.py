"""Alias of :mod:`reschrom.models.precondition` for model folders saved before the library had
subpackages: their ``model_index.json`` names ``["reschrom.precondition",
"PreconditionedUNet2DConditionModel"]``, and diffusers looks the class (and ``ModelMixin``, to
choose its loading method) up in that module once it is imported. New folders name
``reschrom.models.precondition``; both load the same class."""

from diffusers import ModelMixin  # noqa: F401  (diffusers' loader looks ModelMixin up here)

from reschrom.models.precondition import PreconditionedUNet2DConditionModel

__all__ = ["PreconditionedUNet2DConditionModel"]
