"""Splittable backbones; importing this package registers all of them."""

from training.models import efficientnet_lite, resnet  # noqa: F401  (registration)
from training.models.backbone import Segment, SplittableBackbone
from training.models.registry import create_model, list_models, register_model

__all__ = ["Segment", "SplittableBackbone", "create_model", "list_models", "register_model"]
