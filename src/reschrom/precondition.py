"""Alias of :mod:`reschrom.models.precondition` for model folders saved before the library had
subpackages: their ``model_index.json`` names ``["reschrom.precondition",
"PreconditionedUNet2DConditionModel"]``, and diffusers imports that module to load the UNet.
New folders name ``reschrom.models.precondition``; both load the same class."""

from reschrom.models.precondition import PreconditionedUNet2DConditionModel

__all__ = ["PreconditionedUNet2DConditionModel"]
